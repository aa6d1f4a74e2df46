//! What every request handler shares.

use crate::assertion::ReplayCache;
use crate::codes::CodeStore;
use crate::directory::Directory;
use crate::faults::Faults;
use crate::mint::TokenService;
use crate::settings::EmulatorSettings;

pub struct AppState {
    pub tokens: TokenService,
    pub faults: Faults,
    pub codes: CodeStore,
    pub replay: ReplayCache,
    pub settings: EmulatorSettings,
}

impl AppState {
    pub fn directory(&self) -> &Directory {
        &self.tokens.directory
    }

    pub fn now(&self) -> i64 {
        self.tokens.clock.unix()
    }

    pub fn public_url(&self) -> &str {
        &self.tokens.public_url
    }

    /// Hosts the emulator answers for: the public URL's and every name on its certificate.
    pub fn is_own_host(&self, host: &str) -> bool {
        let public = url::Url::parse(self.public_url()).ok();
        let public_host = public.as_ref().and_then(|u| u.host_str());
        public_host.is_some_and(|h| h.eq_ignore_ascii_case(host))
            || self.settings.server.is_tls_name(host)
    }
}
