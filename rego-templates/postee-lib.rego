# Helpers shared by the templates of this folder.
#
# The router adds every `package postee` file of the templates folder to each template,
# so these functions are reachable as data.postee.<name> from any template package.
#
# Why this file exists: rego-cpp resolves `json.<fn>` to a package named `json` when one
# exists at any level above the calling package (data.json, data.postee.json,
# data.postee.rawmessage.json, ...), before it considers the built-in. So package
# postee.rawmessage.html cannot call json.marshal_with_options once
# postee.rawmessage.json is loaded; from plain `package postee` it can.
package postee

import rego.v1

# rawmessage_pretty_json(x): x as JSON indented by two spaces, keys sorted.
rawmessage_pretty_json(x) := json.marshal_with_options(x, {"pretty": true, "indent": "  "})
