# An Aqua scan as a CycloneDX BOM with vulnerabilities, for Dependency-Track.
package conformance.cyclonedx

import rego.v1

title := sprintf("CycloneDX BOM of %s", [input.image])

components := [{
	"type": "library",
	"bom-ref": r.resource.cpe,
	"name": r.resource.name,
	"version": r.resource.version,
	"purl": sprintf("pkg:%s/%s@%s", [r.resource.format, r.resource.name, r.resource.version]),
} | some r in input.resources]

vulnerabilities := [{
	"id": v.name,
	"source": {"name": "NVD", "url": v.nvd_url},
	"ratings": [{"score": v.nvd_score, "severity": v.nvd_severity, "method": "CVSSv2"}],
	"affects": [{"ref": r.resource.cpe}],
} | some r in input.resources; some v in r.vulnerabilities]

result := {
	"bomFormat": "CycloneDX",
	"specVersion": "1.4",
	"version": 1,
	"metadata": {"component": {"type": "container", "name": input.image, "version": input.digest}},
	"components": components,
	"vulnerabilities": vulnerabilities,
}
