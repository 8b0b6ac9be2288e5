# Aggregation of vuls-slack: the input is the list of rendered messages.
package conformance.vuls.slack.aggregation

import rego.v1

title := sprintf("%d scan reports", [count(input)])

result := [block | some message in input; block := {"type": "section", "text": {"type": "mrkdwn", "text": message.title}}]
