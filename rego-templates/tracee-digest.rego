# Postee aggregation template for Tracee: one message for a batch of detections.
#
# input: the batch, a list of rendered messages ({title, description, url}), in order.
#   title:  "3 Tracee detections"
#   result: each detection's title, then its description, separated by a rule.
package postee.tracee.digest

import rego.v1

title := concat("", [sprintf("%v", [count(input)]), " Tracee detections"])

result := concat("\n\n---\n\n", [concat("\n\n", [object.get(m, "title", ""), object.get(m, "description", "")]) | some m in input])
