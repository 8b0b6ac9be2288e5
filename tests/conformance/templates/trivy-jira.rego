# A Trivy JSON report as Jira wiki markup, fixed versions included.
package conformance.trivy.jira

import rego.v1

title := sprintf("Trivy found %d vulnerabilities in %s", [count(rows), input.ArtifactName])

rows contains row if {
	some r in input.Results
	some v in r.Vulnerabilities
	row := sprintf("|%s|%s|%s|%s|%s|", [v.VulnerabilityID, v.PkgName, v.InstalledVersion, object.get(v, "FixedVersion", ""), v.Severity])
}

result := concat("\n", array.concat(["||ID||Package||Installed||Fixed||Severity||"], sort(rows)))
