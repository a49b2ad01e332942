//! The two reviews the API server answers rather than stores, as the real
//! one does: TokenReview (`authentication.k8s.io/v1`: whose token is this?)
//! and SubjectAccessReview (`authorization.k8s.io/v1`: may this user do
//! that?), from the tokens and grants the test gave.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

pub(super) const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub(super) const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// What the test made known: tokens and the users they name, and the
/// (user, verb, non-resource path) grants.
#[derive(Default)]
pub(super) struct Reviews {
    pub(super) tokens: BTreeMap<String, String>,
    pub(super) grants: BTreeSet<(String, String, String)>,
}

impl Reviews {
    /// The answer to a POST on one of the review paths; `None` for any
    /// other path.
    pub(super) fn answer(&self, path: &str, body: &[u8]) -> Option<(u16, Value)> {
        let mut review: Value = serde_json::from_slice(body).ok()?;
        match path {
            TOKEN_REVIEWS => {
                let token = review["spec"]["token"].as_str().unwrap_or_default();
                review["status"] = match self.tokens.get(token) {
                    Some(user) => json!({
                        "authenticated": true,
                        "user": { "username": user, "uid": format!("uid-{user}"),
                                  "groups": ["system:authenticated"] },
                    }),
                    None => json!({ "authenticated": false, "error": "invalid bearer token" }),
                };
            }
            ACCESS_REVIEWS => {
                let spec = &review["spec"];
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                let grant = (
                    text(&spec["user"]),
                    text(&spec["nonResourceAttributes"]["verb"]),
                    text(&spec["nonResourceAttributes"]["path"]),
                );
                review["status"] = json!({ "allowed": self.grants.contains(&grant) });
            }
            _ => return None,
        }
        Some((201, review))
    }
}
