//! The body Entra ID's token endpoint answers on failure. The emulator writes it; callers read it to
//! tell permanent errors (a wrong secret) from transient ones and to name the AADSTS code in logs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntraErrorBody {
    /// OAuth 2.0 error code (RFC 6749 §5.2), e.g. `invalid_client`.
    pub error: String,
    /// `AADSTS{code}: {message}\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …`
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

impl EntraErrorBody {
    /// The first AADSTS code, if the body carries one.
    pub fn aadsts(&self) -> Option<u32> {
        self.error_codes.first().copied()
    }

    /// The description's first line, without the trace, correlation and timestamp lines.
    pub fn summary(&self) -> &str {
        self.error_description
            .split("\r\n")
            .next()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_sample() {
        let body: EntraErrorBody = serde_json::from_str(
            r#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for the input parameter 'scope' isn't valid.\r\nTrace ID: 0000aaaa\r\nCorrelation ID: aaaa0000\r\nTimestamp: 2016-01-09 02:02:12Z","error_codes":[70011],"timestamp":"2016-01-09 02:02:12Z","trace_id":"0000aaaa","correlation_id":"aaaa0000","error_uri":"https://login.microsoftonline.com/error?code=70011"}"#,
        )
        .expect("sample parses");
        assert_eq!(body.aadsts(), Some(70011));
        assert_eq!(
            body.summary(),
            "AADSTS70011: The provided value for the input parameter 'scope' isn't valid."
        );
    }
}
