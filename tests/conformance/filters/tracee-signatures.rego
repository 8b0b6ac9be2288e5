# Route Tracee detections by signature id or by MITRE category prefix.
package postee

import rego.v1

signatures := {"TRC-2", "TRC-7"}

prefixes := ["privilege-", "defense-"]

allow if input.SigMetadata.ID == signatures[_]

allow if startswith(input.SigMetadata.Properties.Category, prefixes[_])
