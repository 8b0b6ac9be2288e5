# Route Trivy reports holding a fixable critical vulnerability.
package postee

import rego.v1

allow if {
	some result in input.Results
	some vuln in result.Vulnerabilities
	vuln.Severity == "CRITICAL"
	vuln.FixedVersion != ""
}
