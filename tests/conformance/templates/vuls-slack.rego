# An Aqua image scan as Slack blocks; the batch package joins several scans.
package conformance.vuls.slack

import rego.v1

title := sprintf("%s vulnerability scan report", [input.image])

aggregation_pkg := "conformance.vuls.slack.aggregation"

severity_field(s) := {"type": "mrkdwn", "text": sprintf("*%s*: %v", [upper(s), input.vulnerability_summary[s]])}

critical := [vuln.name |
	some resource in input.resources
	some vuln in resource.vulnerabilities
	vuln.aqua_severity == "critical"
]

result := [
	{"type": "header", "text": {"type": "plain_text", "text": title}},
	{"type": "section", "fields": [severity_field(s) | some s in ["critical", "high", "medium", "low"]]},
	{"type": "section", "text": {"type": "mrkdwn", "text": concat(", ", sort(critical))}},
	{"type": "context", "elements": [{"type": "mrkdwn", "text": sprintf("%s %s, score %.1f", [input.os, input.version, input.vulnerability_summary.score_average])}]},
]
