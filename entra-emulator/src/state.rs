//! What every request handler shares.

use crate::assertion::ReplayCache;
use crate::cluster::ClusterIssuer;
use crate::codes::CodeStore;
use crate::directory::Directory;
use crate::faults::Faults;
use crate::federation::Federation;
use crate::mint::TokenService;
use crate::settings::EmulatorSettings;

pub struct AppState {
    pub tokens: TokenService,
    pub faults: Faults,
    pub codes: CodeStore,
    pub replay: ReplayCache,
    /// Federated identity credentials and the keys of the issuers they trust.
    pub federation: Federation,
    /// The stand-in Kubernetes service-account issuer.
    pub cluster: ClusterIssuer,
    pub settings: EmulatorSettings,
}

impl AppState {
    /// The state over `tokens` (directory, keys, clock, public URL): the stand-in cluster issuer's
    /// keys opened (created on first use) and the federated credentials resolved, with issuers
    /// fetched trusting `federation_ca` beside the platform's roots.
    pub fn new(
        tokens: TokenService,
        settings: EmulatorSettings,
        federation_ca: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let cluster =
            ClusterIssuer::open(&settings.data_dir, &tokens.public_url, tokens.clock.unix())?;
        // No redirect is followed: an issuer's discovery and keys are fetched from the URLs it
        // names, over HTTPS, and nowhere a redirect would lead (another scheme, another host).
        let client = shared::http::build_client_with(
            &shared::http::HttpClientSettings {
                extra_ca_file: federation_ca,
                connect_timeout_secs: 5,
                request_timeout_secs: 10,
            },
            reqwest::redirect::Policy::none(),
        )
        .context("`federation.extra_ca_file`")?;
        let federation = Federation::new(&tokens.directory, cluster.issuer(), client);
        Ok(Self {
            tokens,
            faults: Default::default(),
            codes: Default::default(),
            replay: Default::default(),
            federation,
            cluster,
            settings,
        })
    }

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
