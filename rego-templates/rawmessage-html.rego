# Postee template: the event as pretty-printed JSON in an HTML <pre> block.
#
# Event strings are untrusted, so the JSON text is HTML-escaped (& < > " ').
# `title` is plain text (it usually becomes a subject line), named like
# postee.rawmessage.json's.
#
# Needs postee-lib.rego (package postee) for the JSON text: see the note there.
package postee.rawmessage.html

import rego.v1

# The event as an object; {} for any other input, so that lookups never fail.
default event := {}

event := input if is_object(input)

# Fields that commonly name an event, most specific first (same list as rawmessage.json).
title_fields := [
	["title"],
	["name"],
	["image"],
	["ArtifactName"],
	["SigMetadata", "Name"],
	["metadata", "name"],
	["type"],
]

title_values := [v |
	some path in title_fields
	v := object.get(event, path, null)
	is_string(v)
	v != ""
]

default title := "Postee event"

title := concat("", ["Postee event: ", title_values[0]]) if count(title_values) > 0

# Pretty JSON of the whole input. The marshal is undefined in some engine states
# (rego-cpp cannot marshal arrays that came in through a Python-value input), so fall
# back to sprintf's one-line rendering rather than leave `result` undefined.
pretty := s if {
	s := data.postee.rawmessage_pretty_json(input)
} else := sprintf("%v", [input])

# Escape & first, so the entities added afterwards are not escaped again.
# (rego-cpp keeps strings JSON-escaped inside, so a `"` of the text is `\"` there and
# is matched by the pattern "\"" below; the replacements add no backslashes.)
html_escape(s) := replace(
	replace(
		replace(
			replace(
				replace(s, "&", "&amp;"),
				"<", "&lt;",
			),
			">", "&gt;",
		),
		"\"", "&quot;",
	),
	"'", "&#39;",
)

default result := "<pre>{}</pre>"

result := concat("", ["<pre>", html_escape(pretty), "</pre>"])
