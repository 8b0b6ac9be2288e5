# Postee template: a trivy-operator (or Starboard) VulnerabilityReport resource.
#
#   title:  "VulnerabilityReport: ReplicaSet/nginx-6d4cf56db6 in default — 2 critical"
#   result: workload, container, image, scanner, the counts of report.summary, then the
#           CRITICAL vulnerabilities sorted by vulnerabilityID, then resource.
#
# The workload comes from the `trivy-operator.resource.*` labels, else the older
# `starboard.resource.*` ones, else the report's own metadata.
#
# Text is assembled with concat, not sprintf: rego-cpp's sprintf, given two or more
# arguments, prints computed strings (function or built-in results) with their quotes.
package postee.trivyoperator

import rego.v1

# The event as an object; {} for any other input, so that lookups never fail.
default event := {}

event := input if is_object(input)

# text(x): a value as display text; "" for null (absent fields are looked up as null).
text(x) := x if is_string(x)
else := "" if x == null
else := sprintf("%v", [x])

# field(path): the event's value at path (an array of keys), as text.
field(path) := text(object.get(event, path, null))

# or_else(s, d): s, or d when s is empty.
or_else(s, d) := s if s != ""
else := d

# label(suffix): label "trivy-operator.<suffix>", else "starboard.<suffix>", else "".
label(suffix) := v if {
	v := field(["metadata", "labels", concat("", ["trivy-operator.", suffix])])
	v != ""
} else := field(["metadata", "labels", concat("", ["starboard.", suffix])])

# --- Workload ---

kind := or_else(label("resource.kind"), "unknown kind")

name := or_else(label("resource.name"), or_else(field(["metadata", "name"]), "unknown"))

namespace := or_else(label("resource.namespace"), field(["metadata", "namespace"]))

# "ReplicaSet/nginx-6d4cf56db6 in default"; no " in ..." for a cluster-scoped workload.
workload := concat("", [kind, "/", name, " in ", namespace]) if namespace != ""
else := concat("", [kind, "/", name])

container := or_else(label("container.name"), "-")

# --- Image: <server>/<repository>:<tag> (or @<digest> when there is no tag) ---

server := field(["report", "registry", "server"])

repository := field(["report", "artifact", "repository"])

tag := field(["report", "artifact", "tag"])

digest := field(["report", "artifact", "digest"])

server_prefix := concat("", [server, "/"]) if server != ""
else := ""

reference := concat("", [":", tag]) if tag != ""
else := concat("", ["@", digest]) if digest != ""
else := ""

image := concat("", [server_prefix, repository, reference]) if repository != ""
else := "-"

scanner := or_else(
	concat(" ", [part |
		some part in [field(["report", "scanner", "name"]), field(["report", "scanner", "version"])]
		part != ""
	]),
	"-",
)

# --- Vulnerabilities ---

# Severity levels in display order, with their report.summary counters.
levels := ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]

summary_keys := {
	"CRITICAL": "criticalCount",
	"HIGH": "highCount",
	"MEDIUM": "mediumCount",
	"LOW": "lowCount",
	"UNKNOWN": "unknownCount",
}

vulnerabilities := [v |
	some v in object.get(event, ["report", "vulnerabilities"], [])
	is_object(v)
]

# severity(v): the level of a vulnerability, case-insensitively; UNKNOWN for anything
# else. Returns the constant from `levels`, never upper() of the event's text (which
# would corrupt escapes such as \n in rego-cpp's internal string form).
severity(v) := level if {
	s := object.get(v, "severity", "")
	is_string(s)
	some level in levels
	upper(s) == level
} else := "UNKNOWN"

# Counts come from report.summary; a counter missing there is counted from the list.
summary_count(level) := n if {
	n := object.get(event, ["report", "summary", summary_keys[level]], null)
	is_number(n)
} else := count([1 | some v in vulnerabilities; severity(v) == level])

counts := {level: summary_count(level) | some level in levels}

# vfield(v, key): a vulnerability's field as text.
vfield(v, key) := text(object.get(v, key, null))

# One line per critical vulnerability:
#   "- CVE-2019-20367 libbsd0 0.9.1-2 -> 0.9.1-2+deb10u1"
finding(v) := concat("", [
	"- ", or_else(vfield(v, "vulnerabilityID"), "-"),
	" ", or_else(vfield(v, "resource"), "-"),
	" ", or_else(vfield(v, "installedVersion"), "-"),
	" -> ", or_else(vfield(v, "fixedVersion"), "(no fix)"),
	title_suffix(vfield(v, "title")),
])

title_suffix(t) := concat("", [": ", t]) if t != ""
else := ""

# [id, resource, line] rows sort by id, then resource, then the whole line.
critical_rows := sort([[vfield(v, "vulnerabilityID"), vfield(v, "resource"), finding(v)] |
	some v in vulnerabilities
	severity(v) == "CRITICAL"
])

critical_lines := [row[2] | some row in critical_rows]

critical_section := concat("\n", array.concat(
	[concat("", ["Critical vulnerabilities (", sprintf("%d", [count(critical_lines)]), "):"])],
	critical_lines,
)) if count(critical_lines) > 0
else := "Critical vulnerabilities: none"

count_lines := [concat("", ["- ", level, ": ", text(counts[level])]) | some level in levels]

# --- Output ---

default title := "VulnerabilityReport"

title := concat("", ["VulnerabilityReport: ", workload, " — ", text(counts.CRITICAL), " critical"])

default result := "VulnerabilityReport"

result := concat("\n", array.concat(
	array.concat(
		[
			concat("", ["**VulnerabilityReport: ", workload, "**"]),
			concat("", ["- Container: ", container]),
			concat("", ["- Image: ", image]),
			concat("", ["- Scanner: ", scanner]),
			"",
			"Vulnerabilities by severity:",
		],
		count_lines,
	),
	["", critical_section],
))
