# A trivy-operator VulnerabilityReport as Jira wiki markup.
package conformance.trivyoperator.jira

import rego.v1

title := sprintf("Vulnerabilities in %s", [input.metadata.name])

fixable := [v | some v in input.report.vulnerabilities; v.fixedVersion != ""]

result := concat("\n", array.concat(
	[sprintf("%d of %d findings have a fix", [count(fixable), count(input.report.vulnerabilities)])],
	[sprintf("* %s: %s -> %s", [v.vulnerabilityID, v.installedVersion, v.fixedVersion]) | some v in fixable],
))
