# Postee template: a Trivy JSON report as a CycloneDX 1.4 JSON BOM, for the
# dependencytrack and nexusIq outputs.
#
#   title:  "project:version", as those outputs read it: the artifact name when it has
#           a tag ("alpine:3.10"), else the name and "latest".
#   result: {bomFormat, specVersion, version, metadata, components, vulnerabilities}:
#           one component per (package, installed version) with findings, sorted, and
#           each finding with its severity, referring to its component.
#
# Severities are mapped to constants, never lower() of the event's text (see trivy.rego).
package postee.trivy.cyclonedx

import rego.v1

default event := {}

event := input if is_object(input)

text(x) := x if is_string(x)
else := "" if x == null
else := sprintf("%v", [x])

artifact := name if {
	name := text(object.get(event, "ArtifactName", null))
	name != ""
} else := "unknown-artifact"

default title := "unknown-artifact:latest"

title := artifact if contains(artifact, ":")
else := concat(":", [artifact, "latest"])

findings := [v |
	some r in object.get(event, "Results", [])
	is_object(r)
	some v in object.get(r, "Vulnerabilities", [])
	is_object(v)
]

ref(v) := concat("@", [text(object.get(v, "PkgName", null)), text(object.get(v, "InstalledVersion", null))])

levels := {"CRITICAL": "critical", "HIGH": "high", "MEDIUM": "medium", "LOW": "low"}

severity(v) := levels[s] if {
	s := object.get(v, "Severity", "")
	levels[s]
} else := "unknown"

packages := {[text(object.get(v, "PkgName", null)), text(object.get(v, "InstalledVersion", null))] |
	some v in findings
}

components := [{"type": "library", "bom-ref": concat("@", p), "name": p[0], "version": p[1]} |
	some p in sort(packages)
]

vulnerabilities := [{
	"id": text(object.get(v, "VulnerabilityID", null)),
	"ratings": [{"severity": severity(v)}],
	"affects": [{"ref": ref(v)}],
} |
	some v in findings
]

result := {
	"bomFormat": "CycloneDX",
	"specVersion": "1.4",
	"version": 1,
	"metadata": {"component": {"type": "application", "name": artifact}},
	"components": components,
	"vulnerabilities": vulnerabilities,
}
