# Postee template: a Trivy JSON report (`trivy ... --format json`, SchemaVersion 2).
#
#   title:  "Trivy: pom.xml (filesystem) — 2 critical, 2 high"
#   result: vulnerability counts per severity over all Results[].Vulnerabilities, then
#           the CRITICAL findings, sorted by VulnerabilityID, then PkgName.
#
# Results without Vulnerabilities (or a report without Results) count as zero.
#
# Text is assembled with concat, not sprintf: rego-cpp's sprintf, given two or more
# arguments, prints computed strings (function or built-in results) with their quotes.
package postee.trivy

import rego.v1

# The event as an object; {} for any other input, so that lookups never fail.
default event := {}

event := input if is_object(input)

# text(x): a value as display text; "" for null (absent fields are looked up as null).
text(x) := x if is_string(x)
else := "" if x == null
else := sprintf("%v", [x])

# or_else(s, d): s, or d when s is empty.
or_else(s, d) := s if s != ""
else := d

# Severity levels, in display order.
levels := ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]

artifact_name := or_else(text(object.get(event, "ArtifactName", null)), "unknown artifact")

artifact_type := or_else(text(object.get(event, "ArtifactType", null)), "unknown type")

# Every vulnerability of every result. Iterating null or a missing list yields nothing.
vulnerabilities := [v |
	some r in object.get(event, "Results", [])
	is_object(r)
	some v in object.get(r, "Vulnerabilities", [])
	is_object(v)
]

# severity(v): the level of a vulnerability, case-insensitively; UNKNOWN for anything
# else. Returns the constant from `levels`, never upper() of the event's text (which
# would corrupt escapes such as \n in rego-cpp's internal string form).
severity(v) := level if {
	s := object.get(v, "Severity", "")
	is_string(s)
	some level in levels
	upper(s) == level
} else := "UNKNOWN"

counts := {level: n |
	some level in levels
	n := count([1 | some v in vulnerabilities; severity(v) == level])
}

# vfield(v, key): a vulnerability's field as text.
vfield(v, key) := text(object.get(v, key, null))

# One line per critical finding:
#   "- CVE-2019-17571 log4j:log4j 1.2.17 -> 2.0-alpha1: log4j: deserialization ..."
finding(v) := concat("", [
	"- ", or_else(vfield(v, "VulnerabilityID"), "-"),
	" ", or_else(vfield(v, "PkgName"), "-"),
	" ", or_else(vfield(v, "InstalledVersion"), "-"),
	" -> ", or_else(vfield(v, "FixedVersion"), "(no fix)"),
	title_suffix(vfield(v, "Title")),
])

title_suffix(t) := concat("", [": ", t]) if t != ""
else := ""

# [id, package, line] rows sort by id, then package, then the whole line.
critical_rows := sort([[vfield(v, "VulnerabilityID"), vfield(v, "PkgName"), finding(v)] |
	some v in vulnerabilities
	severity(v) == "CRITICAL"
])

critical_lines := [row[2] | some row in critical_rows]

critical_section := concat("\n", array.concat(
	[concat("", ["Critical vulnerabilities (", sprintf("%d", [count(critical_lines)]), "):"])],
	critical_lines,
)) if count(critical_lines) > 0
else := "Critical vulnerabilities: none"

count_lines := [concat("", ["- ", level, ": ", sprintf("%d", [counts[level]])]) | some level in levels]

# --- Output ---

default title := "Trivy report"

title := concat("", [
	"Trivy: ", artifact_name, " (", artifact_type, ") — ",
	sprintf("%d", [counts.CRITICAL]), " critical, ",
	sprintf("%d", [counts.HIGH]), " high",
])

default result := "Trivy report"

result := concat("\n", array.concat(
	array.concat(
		[
			concat("", ["**Trivy scan: ", artifact_name, " (", artifact_type, ")**"]),
			"",
			"Vulnerabilities by severity:",
		],
		count_lines,
	),
	["", critical_section],
))
