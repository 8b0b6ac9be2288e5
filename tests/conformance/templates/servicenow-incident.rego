# An Aqua runtime incident as a ServiceNow incident record.
package conformance.servicenow.incident

import rego.v1

title := sprintf("Aqua incident: %s on %s", [input.name, input.host_name])

urgency := "1" if input.severity_score >= 7
else := "2" if input.severity_score >= 4
else := "3"

details := json.unmarshal(input.data)

result := {
	"short_description": title,
	"urgency": urgency,
	"category": lower(input.category),
	"description": concat("\n", [sprintf("%s: %v", [k, details[k]]) | some k in sort(object.keys(details))]),
	"cmdb_ci": input.host_id,
	"u_scopes": concat(",", input.application_scope),
}
