# An Aqua CSPM insight as a ServiceNow record.
package conformance.servicenow.insight

import rego.v1

title := sprintf("Insight %s: %d impacted resources", [input.insight.id, input.insight.total_impacted_resources])

evidence := [k | some k, v in input.evidence; v != null; v != ""]

result := {
	"short_description": substring(input.insight.description, 0, 80),
	"impact": input.insight.impact,
	"priority": format_int(input.insight.priority, 10),
	"evidence": sort(evidence),
	"resource": object.get(input.resource, "name", "unknown"),
}
