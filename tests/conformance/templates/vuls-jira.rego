# An Aqua image scan as Jira wiki markup.
package conformance.vuls.jira

import rego.v1

title := sprintf("Image %s has %d vulnerabilities", [input.image, input.vulnerability_summary.total])

lines contains line if {
	some resource in input.resources
	some vuln in resource.vulnerabilities
	line := sprintf("|%s|%s|%s|%v|", [vuln.name, resource.resource.name, vuln.nvd_severity, vuln.nvd_score])
}

checks := [sprintf("* %s: %v", [c.control, c.failed]) | some c in input.image_assurance_results.checks_performed]

result := concat("\n", array.concat(
	["h2. Summary", sprintf("Critical: %d, High: %d", [input.vulnerability_summary.critical, input.vulnerability_summary.high]), "||CVE||Package||Severity||Score||"],
	array.concat(sort(lines), checks),
))
