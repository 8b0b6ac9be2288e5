# A Trivy JSON report as Slack blocks.
package conformance.trivy.slack

import rego.v1

vulns := [v | some r in input.Results; some v in r.Vulnerabilities]

count_of(s) := count([v | some v in vulns; v.Severity == s])

title := sprintf("Trivy: %s (%s)", [input.ArtifactName, input.ArtifactType])

result := [
	{"type": "header", "text": {"type": "plain_text", "text": title}},
	{"type": "section", "fields": [{"type": "mrkdwn", "text": sprintf("*%s*: %d", [s, count_of(s)])} | some s in ["CRITICAL", "HIGH", "MEDIUM", "LOW"]]},
	{"type": "section", "text": {"type": "mrkdwn", "text": concat("\n", sort({sprintf("<%s|%s> %s %s", [v.PrimaryURL, v.VulnerabilityID, v.PkgName, v.InstalledVersion]) | some v in vulns; v.Severity == "CRITICAL"}))}},
]
