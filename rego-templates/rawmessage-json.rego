# Postee template: the event itself, as JSON.
#
# `result` is the event object; the caller turns it into compact JSON text.
# `title` names the event from the first common field present (see `title_fields`),
# else it is "Postee event".
#
# Note: inside this package, `json.<fn>` would resolve to data.postee.rawmessage.json.<fn>
# (rego-cpp looks the package's own path up first), so no json.* built-in is used here.
package postee.rawmessage.json

import rego.v1

# The event as an object; {} for any other input, so that lookups never fail.
default event := {}

event := input if is_object(input)

# Fields that commonly name an event, most specific first: a generic `title` or `name`,
# an Aqua image scan, a Trivy report, a Tracee signature, a Kubernetes object, a `type`.
title_fields := [
	["title"],
	["name"],
	["image"],
	["ArtifactName"],
	["SigMetadata", "Name"],
	["metadata", "name"],
	["type"],
]

# Non-empty string values of those fields, in the order above.
title_values := [v |
	some path in title_fields
	v := object.get(event, path, null)
	is_string(v)
	v != ""
]

default title := "Postee event"

title := concat("", ["Postee event: ", title_values[0]]) if count(title_values) > 0

# The event itself (whatever JSON value it is); {} only if there is no input at all.
default result := {}

result := input
