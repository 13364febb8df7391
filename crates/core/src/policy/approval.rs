//! Who must approve an action that changes a workspace outside a sandbox (applying a run's
//! patch) or gives Codex the machine (a `full_access` run): the model that calls the tool, by
//! setting a flag in its arguments, or a human, asked by the MCP client.
//!
//! A flag in the arguments (`approve: true`, `confirm_full_access: true`) is filled in by the
//! calling model itself. Where the client can ask its user (MCP elicitation, or an input
//! request in the 2026-07-28 protocol), the server's [`ApprovalPolicy`] decides whether that
//! flag is enough. [`decide`] is the rule; the front ends only carry it out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The server's approval policy (`--approval`, config `approval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPolicy {
    /// Ask a human where the client can; otherwise the model-set flag decides (the
    /// behaviour of clients without elicitation stays as it was).
    #[default]
    Auto,
    /// Always a human's answer; refused when the client cannot ask its user.
    Human,
    /// The flag set by the calling model is enough; nobody is asked (trusted automation).
    Client,
}

impl ApprovalPolicy {
    pub const ALL: [ApprovalPolicy; 3] = [Self::Auto, Self::Human, Self::Client];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Human => "human",
            Self::Client => "client",
        }
    }
}

impl fmt::Display for ApprovalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approval policy name that is not one of `auto`, `human`, `client`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown approval policy `{0}`: expected auto, human or client")]
pub struct UnknownApprovalPolicy(pub String);

impl FromStr for ApprovalPolicy {
    type Err = UnknownApprovalPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownApprovalPolicy(s.to_owned()))
    }
}

/// What needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `codex_patch_apply` writing a run's patch to the workspace (flag `approve`).
    PatchApply,
    /// A `full_access` run (flag `confirm_full_access`).
    FullAccessRun,
}

impl Subject {
    /// The argument the calling model sets.
    pub fn flag(self) -> &'static str {
        match self {
            Subject::PatchApply => "approve: true",
            Subject::FullAccessRun => "confirm_full_access: true",
        }
    }
}

/// What happens with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ask the client's user; their answer decides (the flag does not matter).
    AskHuman,
    /// Approved by the model-set flag; nobody is asked.
    ByFlag,
    /// Refused: the flag is not set and nobody may or can be asked (the front end words it
    /// for its tool, as it always has).
    NoFlag,
    /// Refused: the policy wants a human and the client cannot ask one; the message says so.
    HumanRequired(String),
}

/// The rule: `policy`, whether the client can ask its user, and whether the model set the
/// flag. Pure.
pub fn decide(
    policy: ApprovalPolicy,
    client_can_ask: bool,
    flag: bool,
    subject: Subject,
) -> Decision {
    match (policy, client_can_ask) {
        (ApprovalPolicy::Auto | ApprovalPolicy::Human, true) => Decision::AskHuman,
        (ApprovalPolicy::Human, false) => Decision::HumanRequired(format!(
            "this server requires a human's approval (approval policy `human`), and this MCP client cannot ask its user: it declared no elicitation capability. Use a client that supports elicitation; {} alone is not enough here",
            subject.flag()
        )),
        (ApprovalPolicy::Auto | ApprovalPolicy::Client, _) if flag => Decision::ByFlag,
        (ApprovalPolicy::Auto | ApprovalPolicy::Client, _) => Decision::NoFlag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_table() {
        use ApprovalPolicy::*;
        use Decision::*;
        let s = Subject::PatchApply;
        let human = HumanRequired("this server requires a human's approval (approval policy `human`), and this MCP client cannot ask its user: it declared no elicitation capability. Use a client that supports elicitation; approve: true alone is not enough here".into());
        let table = [
            (Auto, true, false, AskHuman),
            (Auto, true, true, AskHuman),
            (Auto, false, true, ByFlag),
            (Auto, false, false, NoFlag),
            (Human, true, false, AskHuman),
            (Human, true, true, AskHuman),
            (Human, false, true, human.clone()),
            (Human, false, false, human.clone()),
            (Client, true, true, ByFlag),
            (Client, false, true, ByFlag),
            (Client, true, false, NoFlag),
            (Client, false, false, NoFlag),
        ];
        for (policy, can_ask, flag, want) in table {
            assert_eq!(
                decide(policy, can_ask, flag, s),
                want,
                "{policy} can_ask={can_ask} flag={flag}"
            );
        }
        assert_eq!(
            decide(Human, false, true, Subject::FullAccessRun),
            HumanRequired("this server requires a human's approval (approval policy `human`), and this MCP client cannot ask its user: it declared no elicitation capability. Use a client that supports elicitation; confirm_full_access: true alone is not enough here".into())
        );
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_named() {
        for p in ApprovalPolicy::ALL {
            assert_eq!(p.as_str().parse::<ApprovalPolicy>(), Ok(p));
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::json!(p.as_str())
            );
        }
        assert_eq!(ApprovalPolicy::default(), ApprovalPolicy::Auto);
        assert_eq!(
            "none".parse::<ApprovalPolicy>().unwrap_err().to_string(),
            "unknown approval policy `none`: expected auto, human or client"
        );
    }
}
