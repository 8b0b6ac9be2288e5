# A Tracee detection as HTML.
package conformance.tracee.html

import rego.v1

title := sprintf("Tracee %s: %s", [input.SigMetadata.ID, input.SigMetadata.Name])

properties := concat("", [sprintf("<li>%s: %v</li>", [k, input.SigMetadata.Properties[k]]) | some k in sort(object.keys(input.SigMetadata.Properties))])

result := sprintf("<h2>%s</h2><p>%s</p><ul>%s</ul><p>Process %s (pid %d) in %s</p>", [
	title, input.SigMetadata.Description, properties, input.Context.processName,
	input.Context.processId, object.get(input.Context, "containerImage", "the host"),
])
