# A trivy-operator VulnerabilityReport as Slack blocks.
package conformance.trivyoperator.slack

import rego.v1

workload := sprintf("%s/%s", [input.metadata.labels["trivy-operator.resource.kind"], input.metadata.labels["trivy-operator.resource.name"]])

title := sprintf("%s in %s: %d critical", [workload, input.metadata.namespace, input.report.summary.criticalCount])

result := [
	{"type": "header", "text": {"type": "plain_text", "text": title}},
	{"type": "section", "text": {"type": "mrkdwn", "text": sprintf("Image %s/%s:%s, scanned by %s %s", [input.report.registry.server, input.report.artifact.repository, input.report.artifact.tag, input.report.scanner.name, input.report.scanner.version])}},
	{"type": "section", "fields": [{"type": "mrkdwn", "text": sprintf("%s %s (%v)", [v.vulnerabilityID, v.resource, v.score])} | some v in input.report.vulnerabilities; v.severity == "CRITICAL"]},
]
