# An Aqua image scan as HTML: summary counts, then one table row per vulnerability.
package conformance.vuls.html

import rego.v1

title := sprintf("%s vulnerability scan report", [input.image])

severities := ["critical", "high", "medium", "low", "negligible"]

summary := concat("", [sprintf("<li>%s: %d</li>", [s, input.vulnerability_summary[s]]) | some s in severities])

rows contains row if {
	some resource in input.resources
	some vuln in resource.vulnerabilities
	row := sprintf("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>", [
		vuln.name, resource.resource.name, resource.resource.version,
		object.get(vuln, "aqua_severity", "unknown"),
	])
}

result := sprintf("<h1>%s</h1><p>Registry: %s</p><ul>%s</ul><table>%s</table>", [
	input.image, input.registry, summary, concat("", sort(rows)),
])

url := sprintf("https://aqua.example/images/%s/%s", [urlquery.encode(input.registry), urlquery.encode(input.image)])
