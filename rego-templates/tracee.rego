# Postee template: a Tracee signature event (tracee-rules output).
#
#   title:  "Tracee TRC-2 Anti-Debugging (severity 3)"
#   result: a Markdown-ish summary: signature, severity, MITRE ATT&CK, event, time,
#           process, host, container and pod. Missing fields show as "-".
#
# Every value is looked up with a default, so title and result are defined for any
# input, also one without SigMetadata or Context.
#
# Text is assembled with concat, not sprintf: rego-cpp's sprintf, given two or more
# arguments, prints computed strings (function or built-in results) with their quotes.
package postee.tracee

import rego.v1

# Aggregating routes (aggregate-message-number/-timeout) render their batch with this.
aggregation_pkg := "postee.tracee.digest"

# The event as an object; {} for any other input, so that lookups never fail.
default event := {}

event := input if is_object(input)

# text(x): a value as display text; "" for null (absent fields are looked up as null).
text(x) := x if is_string(x)
else := "" if x == null
else := sprintf("%v", [x])

# field(path): the event's value at path (an array of keys), as text.
field(path) := text(object.get(event, path, null))

# or_dash(s): s, or "-" when it is empty.
or_dash(s) := s if s != ""
else := "-"

# --- Signature (SigMetadata) ---

sig_id := field(["SigMetadata", "ID"])

sig_name := field(["SigMetadata", "Name"])

description := field(["SigMetadata", "Description"])

severity := field(["SigMetadata", "Properties", "Severity"])

category := field(["SigMetadata", "Properties", "Category"])

mitre := field(["SigMetadata", "Properties", "MITRE ATT&CK"])

# "TRC-2 Anti-Debugging", or whichever part is present.
signature := concat(" ", [part | some part in [sig_id, sig_name]; part != ""])

# --- Event context (Context) ---

event_name := field(["Context", "eventName"])

process_name := field(["Context", "processName"])

pid := field(["Context", "processId"])

host_pid := field(["Context", "hostProcessId"])

host_name := field(["Context", "hostName"])

container_id := field(["Context", "containerId"])

container_image := field(["Context", "containerImage"])

pod_name := field(["Context", "podName"])

pod_namespace := field(["Context", "podNamespace"])

# Tracee timestamps are nanoseconds since the epoch: shown as RFC 3339 (UTC).
# time.format is undefined for anything else; then the raw value is shown.
raw_timestamp := object.get(event, ["Context", "timestamp"], null)

timestamp := t if {
	is_number(raw_timestamp)
	t := time.format(raw_timestamp)
} else := text(raw_timestamp)

# --- Output ---

default title := "Tracee event"

title := concat("", ["Tracee ", signature, " (severity ", severity, ")"]) if {
	signature != ""
	severity != ""
} else := concat("", ["Tracee ", signature]) if {
	signature != ""
}

heading := concat("", ["**Tracee signature ", signature, "**"]) if signature != ""
else := "**Tracee event**"

process := concat("", [
	or_dash(process_name),
	" (pid ", or_dash(pid),
	", host pid ", or_dash(host_pid), ")",
])

lines := [
	heading,
	or_dash(description),
	"",
	concat("", ["- Severity: ", or_dash(severity)]),
	concat("", ["- MITRE ATT&CK: ", or_dash(mitre)]),
	concat("", ["- Category: ", or_dash(category)]),
	concat("", ["- Event: ", or_dash(event_name)]),
	concat("", ["- Time: ", or_dash(timestamp)]),
	concat("", ["- Process: ", process]),
	concat("", ["- Host: ", or_dash(host_name)]),
	concat("", ["- Container: ", or_dash(container_id)]),
	concat("", ["- Image: ", or_dash(container_image)]),
	concat("", ["- Pod: ", or_dash(pod_name)]),
	concat("", ["- Namespace: ", or_dash(pod_namespace)]),
]

default result := "**Tracee event**"

result := concat("\n", lines)
