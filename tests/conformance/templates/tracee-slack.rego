# A Tracee detection as Slack blocks, the event attached as pretty JSON.
package conformance.tracee.slack

import rego.v1

title := sprintf("%s (severity %d)", [input.SigMetadata.Name, input.SigMetadata.Properties.Severity])

result := [
	{"type": "header", "text": {"type": "plain_text", "text": title}},
	{"type": "section", "text": {"type": "mrkdwn", "text": concat(" ", [sprintf("`%s`", [t]) | some t in input.SigMetadata.Tags])}},
	{"type": "section", "text": {"type": "mrkdwn", "text": sprintf("```%s```", [jsonformat(input.Context)])}},
]
