//! The directory the emulator answers from: tenants, app registrations (with their secrets,
//! certificate credentials, app roles and token settings), app-role assignments and users, read
//! from a TOML file at start. Everything is checked before the emulator serves a request; an invalid
//! file is refused with the file, the entry and the reason, because a directory that half-loads
//! would answer with misleading AADSTS errors later.

use anyhow::Context;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// ---- the file's shape ------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    tenants: Vec<TenantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    id: String,
    domain: String,
    #[serde(default)]
    display_name: Option<String>,
    /// Entra answers it in discovery (`tenant_region_scope`); default "NA".
    #[serde(default)]
    region_scope: Option<String>,
    #[serde(default)]
    applications: Vec<ApplicationEntry>,
    #[serde(default)]
    role_assignments: Vec<AssignmentEntry>,
    #[serde(default)]
    users: Vec<UserEntry>,
    /// Managed identities: clients with no credential of their own, whose tokens the managed
    /// identity endpoint hands out (`[managed_identity]` in the emulator's settings).
    #[serde(default)]
    managed_identities: Vec<ManagedIdentityEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManagedIdentityEntry {
    name: String,
    /// Its client ID (the app ID of its service principal).
    client_id: String,
    /// Its service principal's object ID: `oid` and `sub` of its tokens (`principal_id`,
    /// `object_id` in the endpoints' parameters).
    principal_id: String,
    /// The Azure resource ID: `/subscriptions/…/providers/Microsoft.ManagedIdentity/
    /// userAssignedIdentities/{name}` for a user-assigned one, the resource's own for a
    /// system-assigned one (`xms_mirid`, `mi_res_id`).
    resource_id: String,
    /// A user-assigned identity can trust other issuers too, as Entra's can.
    #[serde(default)]
    federated_credentials: Vec<FederatedCredentialEntry>,
}

/// A federated identity credential: assertions from `issuer` about `subject`, for one of
/// `audiences`, stand in for the app's own credential (workload identity federation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FederatedCredentialEntry {
    name: String,
    /// An HTTPS issuer URL, compared exactly; or `cluster`: this emulator's own service-account
    /// issuer (`{public_url}/cluster`), whatever URL the emulator is reached by.
    issuer: String,
    subject: String,
    /// Default `["api://AzureADTokenExchange"]`.
    #[serde(default)]
    audiences: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationEntry {
    name: String,
    client_id: String,
    /// Object ID of the app's service principal in this tenant: `oid` and `sub` of its app tokens.
    service_principal_id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    identifier_uris: Vec<String>,
    /// `accessTokenAcceptedVersion`: 1 or 2. Entra's default (null) issues v1 tokens.
    #[serde(default)]
    access_token_version: Option<u8>,
    /// The `idtyp` optional claim. Default off, as in Entra.
    #[serde(default)]
    idtyp_claim: bool,
    /// `appRoleAssignmentRequired` on the service principal. Default off, as in Entra.
    #[serde(default)]
    app_role_assignment_required: bool,
    #[serde(default)]
    app_roles: Vec<String>,
    /// Delegated permissions the API exposes (`oauth2PermissionScopes`).
    #[serde(default)]
    delegated_scopes: Vec<String>,
    #[serde(default)]
    public_client: bool,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_secrets: Vec<SecretEntry>,
    #[serde(default)]
    certificates: Vec<CertificateEntry>,
    #[serde(default)]
    federated_credentials: Vec<FederatedCredentialEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntry {
    #[serde(default)]
    description: Option<String>,
    value: String,
    /// RFC 3339; absent means it never expires.
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateEntry {
    /// PEM certificate, relative to the directory file.
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentEntry {
    /// The client application, by name or client ID.
    client: String,
    /// The API, by name, client ID or application ID URI.
    resource: String,
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    display_name: String,
    object_id: String,
    /// Consented delegated scopes, by API name: `{ tasks-api = ["Tasks.Read"] }`.
    #[serde(default)]
    consented_scopes: BTreeMap<String, Vec<String>>,
}

// ---- the validated model ---------------------------------------------------------------------

#[derive(Debug)]
pub struct Directory {
    pub source: PathBuf,
    pub tenants: Vec<Tenant>,
}

#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub domain: String,
    pub display_name: String,
    pub region_scope: String,
    pub applications: Vec<Application>,
    pub users: Vec<User>,
    /// (client index, resource index) → roles the client holds on that resource.
    assignments: HashMap<(usize, usize), Vec<String>>,
}

#[derive(Debug)]
pub struct Application {
    pub name: String,
    pub client_id: String,
    pub service_principal_id: String,
    pub display_name: String,
    pub identifier_uris: Vec<String>,
    pub access_token_version: u8,
    pub idtyp_claim: bool,
    pub app_role_assignment_required: bool,
    pub app_roles: Vec<String>,
    pub delegated_scopes: Vec<String>,
    pub public_client: bool,
    pub redirect_uris: Vec<String>,
    pub client_secrets: Vec<ClientSecret>,
    pub certificates: Vec<CertificateCredential>,
    /// Workload identity federation: the issuers and subjects it trusts.
    pub federated_credentials: Vec<FederatedRecord>,
    /// For a managed identity: its Azure resource ID. It has no secret and no certificate: only
    /// the managed identity endpoint issues its tokens.
    pub managed_identity: Option<String>,
}

/// A federated identity credential as the directory file declares it.
#[derive(Debug, Clone)]
pub struct FederatedRecord {
    pub name: String,
    pub issuer: FederatedIssuer,
    pub subject: String,
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederatedIssuer {
    /// The emulator's own service-account issuer, resolved when it knows its public URL.
    Cluster,
    Url(String),
}

#[derive(Debug)]
pub struct ClientSecret {
    pub value: shared::Secret,
    pub expires: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct CertificateCredential {
    /// base64url(SHA-1(DER)): the `x5t` an RS256 assertion names.
    pub x5t: String,
    /// base64url(SHA-256(DER)): the `x5t#S256` a PS256 assertion names.
    pub x5t_s256: String,
    /// PKCS#1 RSAPublicKey DER, what `jsonwebtoken::DecodingKey::from_rsa_der` takes.
    pub public_key_der: Vec<u8>,
    pub not_after: OffsetDateTime,
}

#[derive(Debug)]
pub struct User {
    pub username: String,
    pub display_name: String,
    pub object_id: String,
    /// API client ID → consented scopes.
    pub consented_scopes: HashMap<String, Vec<String>>,
}

impl Directory {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("directory {}: cannot read", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let file: DirectoryFile = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "directory {}: {}",
                path.display(),
                e.to_string().replace('\n', " ")
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut tenants = Vec::with_capacity(file.tenants.len());
        for (i, entry) in file.tenants.into_iter().enumerate() {
            let label = format!("tenants[{i}] ({})", entry.domain);
            let tenant = build_tenant(entry, base).map_err(|reason| {
                anyhow::anyhow!("directory {}: {label}: {reason}", path.display())
            })?;
            tenants.push(tenant);
        }
        if tenants.is_empty() {
            anyhow::bail!("directory {}: no [[tenants]] entry", path.display());
        }
        for (i, t) in tenants.iter().enumerate() {
            for other in &tenants[..i] {
                if other.id == t.id || other.domain.eq_ignore_ascii_case(&t.domain) {
                    anyhow::bail!(
                        "directory {}: tenants[{i}] ({}): id or domain repeats another tenant's",
                        path.display(),
                        t.domain
                    );
                }
            }
        }
        Ok(Self {
            source: path.to_path_buf(),
            tenants,
        })
    }

    /// By tenant GUID or verified domain name, as Entra accepts either in its paths.
    pub fn tenant(&self, id_or_domain: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| {
            t.id.eq_ignore_ascii_case(id_or_domain) || t.domain.eq_ignore_ascii_case(id_or_domain)
        })
    }
}

impl Tenant {
    pub fn application_by_client_id(&self, client_id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    /// By name or client ID: how the CLI and the directory file refer to applications.
    pub fn application(&self, name_or_id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.name == name_or_id || a.client_id.eq_ignore_ascii_case(name_or_id))
    }

    /// The resource a scope names: by application ID URI (exact, as Entra compares it) or client ID.
    pub fn resource(&self, identifier: &str) -> Option<&Application> {
        self.applications.iter().find(|a| {
            a.client_id.eq_ignore_ascii_case(identifier)
                || a.identifier_uris.iter().any(|u| u == identifier)
        })
    }

    /// The managed identity a managed-identity endpoint's parameter names: `client_id`,
    /// `object_id`/`principal_id` (its service principal) or `mi_res_id`/`msi_res_id` (its
    /// resource ID, compared case-insensitively as Azure does).
    pub fn managed_identity(&self, parameter: &str, value: &str) -> Option<&Application> {
        self.applications.iter().find(|a| {
            let Some(resource_id) = &a.managed_identity else {
                return false;
            };
            match parameter {
                "client_id" => a.client_id.eq_ignore_ascii_case(value),
                "object_id" | "principal_id" => a.service_principal_id.eq_ignore_ascii_case(value),
                "mi_res_id" | "msi_res_id" => resource_id.eq_ignore_ascii_case(value),
                _ => false,
            }
        })
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
    }

    /// Roles `client` holds on `resource`, sorted; empty when none.
    pub fn roles(&self, client: &Application, resource: &Application) -> &[String] {
        let index = |app: &Application| self.applications.iter().position(|a| std::ptr::eq(a, app));
        match (index(client), index(resource)) {
            (Some(c), Some(r)) => self
                .assignments
                .get(&(c, r))
                .map(Vec::as_slice)
                .unwrap_or_default(),
            _ => &[],
        }
    }
}

fn build_tenant(entry: TenantEntry, base: &Path) -> Result<Tenant, String> {
    check_guid("id", &entry.id)?;
    if entry.domain.trim().is_empty() || entry.domain.contains('/') {
        return Err("domain: must be a DNS name such as contoso.onmicrosoft.com".into());
    }
    let mut applications: Vec<Application> = Vec::with_capacity(entry.applications.len());
    for (i, app) in entry.applications.into_iter().enumerate() {
        let label = format!("applications[{i}] ({})", app.name);
        let built = build_application(app, base).map_err(|r| format!("{label}: {r}"))?;
        if let Some(dup) = applications.iter().find(|a| {
            a.name == built.name
                || a.client_id.eq_ignore_ascii_case(&built.client_id)
                || a.identifier_uris
                    .iter()
                    .any(|u| built.identifier_uris.contains(u))
        }) {
            return Err(format!(
                "{label}: name, client_id or an identifier URI repeats application '{}'",
                dup.name
            ));
        }
        applications.push(built);
    }

    for (i, mi) in entry.managed_identities.into_iter().enumerate() {
        let label = format!("managed_identities[{i}] ({})", mi.name);
        let built = build_managed_identity(mi).map_err(|r| format!("{label}: {r}"))?;
        if let Some(dup) = applications
            .iter()
            .find(|a| a.name == built.name || a.client_id.eq_ignore_ascii_case(&built.client_id))
        {
            return Err(format!(
                "{label}: name or client_id repeats application '{}'",
                dup.name
            ));
        }
        applications.push(built);
    }

    // Microsoft's own resources, which every Entra tenant holds, unless the file declares one.
    for first_party in first_party_applications(&entry.id.to_ascii_lowercase()) {
        let declared = applications.iter().any(|a| {
            a.client_id.eq_ignore_ascii_case(&first_party.client_id)
                || a.identifier_uris
                    .iter()
                    .any(|u| first_party.identifier_uris.contains(u))
        });
        if !declared {
            applications.push(first_party);
        }
    }

    let find = |key: &str, by_uri: bool| {
        applications.iter().position(|a| {
            a.name == key
                || a.client_id.eq_ignore_ascii_case(key)
                || (by_uri && a.identifier_uris.iter().any(|u| u == key))
        })
    };
    let mut assignments: HashMap<(usize, usize), Vec<String>> = HashMap::new();
    for (i, assignment) in entry.role_assignments.iter().enumerate() {
        let label = format!("role_assignments[{i}]");
        let client = find(&assignment.client, false)
            .ok_or_else(|| format!("{label}: client: no application '{}'", assignment.client))?;
        let resource = find(&assignment.resource, true).ok_or_else(|| {
            format!(
                "{label}: resource: no application '{}'",
                assignment.resource
            )
        })?;
        let declared = &applications[resource].app_roles;
        for role in &assignment.roles {
            if !declared.contains(role) {
                return Err(format!(
                    "{label}: roles: '{role}' is not an app role of '{}' (it has: {})",
                    applications[resource].name,
                    declared.join(", ")
                ));
            }
        }
        let roles = assignments.entry((client, resource)).or_default();
        roles.extend(assignment.roles.iter().cloned());
        roles.sort();
        roles.dedup();
    }

    let mut users = Vec::with_capacity(entry.users.len());
    for (i, user) in entry.users.into_iter().enumerate() {
        let label = format!("users[{i}] ({})", user.username);
        check_guid("object_id", &user.object_id).map_err(|r| format!("{label}: {r}"))?;
        if !user.username.contains('@') {
            return Err(format!(
                "{label}: username: must be a UPN such as ada@contoso.onmicrosoft.com"
            ));
        }
        let mut consented = HashMap::new();
        for (api, scopes) in user.consented_scopes {
            let index = find(&api, true)
                .ok_or_else(|| format!("{label}: consented_scopes: no application '{api}'"))?;
            let resource = &applications[index];
            if let Some(bad) = scopes
                .iter()
                .find(|s| !resource.delegated_scopes.contains(s))
            {
                return Err(format!(
                    "{label}: consented_scopes: '{bad}' is not a delegated scope of '{}'",
                    resource.name
                ));
            }
            consented.insert(resource.client_id.clone(), scopes);
        }
        users.push(User {
            username: user.username,
            display_name: user.display_name,
            object_id: user.object_id,
            consented_scopes: consented,
        });
    }

    Ok(Tenant {
        id: entry.id.to_ascii_lowercase(),
        display_name: entry.display_name.unwrap_or_else(|| entry.domain.clone()),
        domain: entry.domain,
        region_scope: entry.region_scope.unwrap_or_else(|| "NA".into()),
        applications,
        users,
        assignments,
    })
}

/// Microsoft's first-party resources, as every Entra tenant holds their service principals: a
/// client-credentials request for `https://graph.microsoft.com/.default` or Azure Resource
/// Manager's scope gets a token here as it does from Entra (v1 tokens, `aud` the resource as
/// requested, `idtyp` app), and tools that ask for them (`az login --service-principal` asks for
/// ARM's) are not refused with AADSTS500011. Each app ID is the one Entra uses; identifier URIs are
/// listed with and without the trailing `/`, both spellings clients send. Graph carries a few of
/// its application permissions as app roles, for `role_assignments`; the others have none (Azure
/// authorises with RBAC, not roles in the token).
/// One of Microsoft's first-party resources (see [`FIRST_PARTY`]).
pub struct FirstParty {
    pub name: &'static str,
    pub display_name: &'static str,
    pub client_id: &'static str,
    pub identifier_uris: &'static [&'static str],
    pub app_roles: &'static [&'static str],
}

pub const FIRST_PARTY: [FirstParty; 4] = [
    FirstParty {
        name: "microsoft-graph",
        display_name: "Microsoft Graph",
        client_id: "00000003-0000-0000-c000-000000000000",
        identifier_uris: &[
            "https://graph.microsoft.com",
            "https://graph.microsoft.com/",
        ],
        app_roles: &[
            "Application.Read.All",
            "Directory.Read.All",
            "Group.Read.All",
            "Mail.Send",
            "Sites.Read.All",
            "User.Read.All",
        ],
    },
    FirstParty {
        name: "azure-resource-manager",
        display_name: "Windows Azure Service Management API",
        client_id: "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        identifier_uris: &[
            "https://management.azure.com",
            "https://management.azure.com/",
            "https://management.core.windows.net",
            "https://management.core.windows.net/",
        ],
        app_roles: &[],
    },
    FirstParty {
        name: "azure-key-vault",
        display_name: "Azure Key Vault",
        client_id: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
        identifier_uris: &["https://vault.azure.net", "https://vault.azure.net/"],
        app_roles: &[],
    },
    FirstParty {
        name: "azure-storage",
        display_name: "Azure Storage",
        client_id: "e406a681-f3d4-42a8-90b6-c2b029497af1",
        identifier_uris: &["https://storage.azure.com", "https://storage.azure.com/"],
        app_roles: &[],
    },
];

fn first_party_applications(tenant_id: &str) -> Vec<Application> {
    FIRST_PARTY
        .iter()
        .map(|app| Application {
            name: app.name.into(),
            client_id: app.client_id.into(),
            // A service principal's object ID differs per tenant; here it is derived from the
            // tenant and the app, so it is stable across restarts.
            service_principal_id: derived_guid(&format!("{tenant_id}:{}", app.client_id)),
            display_name: app.display_name.into(),
            identifier_uris: app.identifier_uris.iter().map(|u| (*u).into()).collect(),
            access_token_version: 1,
            idtyp_claim: true,
            app_role_assignment_required: false,
            app_roles: app.app_roles.iter().map(|r| (*r).into()).collect(),
            delegated_scopes: if app.name == "microsoft-graph" {
                vec!["User.Read".into()]
            } else {
                vec!["user_impersonation".into()]
            },
            public_client: false,
            redirect_uris: Vec::new(),
            client_secrets: Vec::new(),
            certificates: Vec::new(),
            federated_credentials: Vec::new(),
            managed_identity: None,
        })
        .collect()
}

fn build_managed_identity(mi: ManagedIdentityEntry) -> Result<Application, String> {
    if mi.name.trim().is_empty() {
        return Err("name: must not be empty".into());
    }
    check_guid("client_id", &mi.client_id)?;
    check_guid("principal_id", &mi.principal_id)?;
    if !mi
        .resource_id
        .to_ascii_lowercase()
        .starts_with("/subscriptions/")
    {
        return Err(format!(
            "resource_id: '{}' is not an Azure resource ID (/subscriptions/…/providers/…)",
            mi.resource_id
        ));
    }
    let federated_credentials = build_federated(mi.federated_credentials)?;
    if !federated_credentials.is_empty()
        && !mi
            .resource_id
            .to_ascii_lowercase()
            .contains("/providers/microsoft.managedidentity/userassignedidentities/")
    {
        return Err(
            "federated_credentials: only a user-assigned identity (resource_id …/Microsoft.ManagedIdentity/userAssignedIdentities/…) can have them, as in Entra".into(),
        );
    }
    Ok(Application {
        display_name: mi.name.clone(),
        name: mi.name,
        client_id: mi.client_id.to_ascii_lowercase(),
        service_principal_id: mi.principal_id.to_ascii_lowercase(),
        identifier_uris: Vec::new(),
        access_token_version: 1,
        idtyp_claim: false,
        app_role_assignment_required: false,
        app_roles: Vec::new(),
        delegated_scopes: Vec::new(),
        public_client: false,
        redirect_uris: Vec::new(),
        client_secrets: Vec::new(),
        certificates: Vec::new(),
        federated_credentials,
        managed_identity: Some(mi.resource_id),
    })
}

/// A GUID (version 4 layout) from the SHA-256 of `seed`.
fn derived_guid(seed: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn build_application(app: ApplicationEntry, base: &Path) -> Result<Application, String> {
    if app.name.trim().is_empty() {
        return Err("name: must not be empty".into());
    }
    check_guid("client_id", &app.client_id)?;
    check_guid("service_principal_id", &app.service_principal_id)?;
    let version = app.access_token_version.unwrap_or(1);
    if version != 1 && version != 2 {
        return Err(format!(
            "access_token_version: {version} is neither 1 nor 2"
        ));
    }
    for uri in &app.identifier_uris {
        url::Url::parse(uri).map_err(|e| format!("identifier_uris: '{uri}' is not a URI: {e}"))?;
        if uri.ends_with('/') {
            return Err(format!("identifier_uris: '{uri}' must not end with '/'"));
        }
    }
    for uri in &app.redirect_uris {
        url::Url::parse(uri).map_err(|e| format!("redirect_uris: '{uri}' is not a URL: {e}"))?;
    }
    let mut client_secrets = Vec::with_capacity(app.client_secrets.len());
    for (i, secret) in app.client_secrets.into_iter().enumerate() {
        let label = format!(
            "client_secrets[{i}]{}",
            secret
                .description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
        if secret.value.len() < 16 {
            return Err(format!("{label}: value: shorter than 16 characters"));
        }
        let expires = secret
            .expires
            .as_deref()
            .map(|e| OffsetDateTime::parse(e, &Rfc3339))
            .transpose()
            .map_err(|e| format!("{label}: expires: not an RFC 3339 time: {e}"))?;
        client_secrets.push(ClientSecret {
            value: shared::Secret::new(secret.value),
            expires,
        });
    }
    let mut certificates = Vec::with_capacity(app.certificates.len());
    for (i, cert) in app.certificates.iter().enumerate() {
        let path = base.join(&cert.path);
        certificates.push(
            load_certificate(&path)
                .map_err(|r| format!("certificates[{i}] ({}): {r}", path.display()))?,
        );
    }
    if app.public_client && !client_secrets.is_empty() {
        return Err("public_client: a public client cannot have client secrets".into());
    }
    let federated_credentials = build_federated(app.federated_credentials)?;
    if app.public_client && !federated_credentials.is_empty() {
        return Err("public_client: a public client cannot have federated credentials".into());
    }
    Ok(Application {
        display_name: app.display_name.unwrap_or_else(|| app.name.clone()),
        name: app.name,
        client_id: app.client_id.to_ascii_lowercase(),
        service_principal_id: app.service_principal_id.to_ascii_lowercase(),
        identifier_uris: app.identifier_uris,
        access_token_version: version,
        idtyp_claim: app.idtyp_claim,
        app_role_assignment_required: app.app_role_assignment_required,
        app_roles: app.app_roles,
        delegated_scopes: app.delegated_scopes,
        public_client: app.public_client,
        redirect_uris: app.redirect_uris,
        client_secrets,
        certificates,
        federated_credentials,
        managed_identity: None,
    })
}

/// Entra's rules for federated credentials: a unique name, an HTTPS issuer, a subject, one or
/// more audiences (Entra's portal allows one), at most 20 per app.
fn build_federated(entries: Vec<FederatedCredentialEntry>) -> Result<Vec<FederatedRecord>, String> {
    if entries.len() > 20 {
        return Err(format!(
            "federated_credentials: {} entries; Entra allows at most 20 per app",
            entries.len()
        ));
    }
    let mut built: Vec<FederatedRecord> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let label = format!("federated_credentials[{i}] ({})", entry.name);
        let name_ok = (3..=120).contains(&entry.name.len())
            && entry
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "{label}: name: 3 to 120 letters, digits, '-' or '_', as Entra requires"
            ));
        }
        if built.iter().any(|b| b.name == entry.name) {
            return Err(format!("{label}: name: repeats another credential's"));
        }
        let issuer = if entry.issuer == "cluster" {
            FederatedIssuer::Cluster
        } else {
            let url = url::Url::parse(&entry.issuer)
                .map_err(|e| format!("{label}: issuer: '{}' is not a URL: {e}", entry.issuer))?;
            if url.scheme() != "https" {
                return Err(format!(
                    "{label}: issuer: '{}' must be an HTTPS URL (or `cluster`, the emulator's own)",
                    entry.issuer
                ));
            }
            FederatedIssuer::Url(entry.issuer)
        };
        if entry.subject.trim().is_empty() {
            return Err(format!("{label}: subject: must not be empty"));
        }
        let audiences = entry
            .audiences
            .unwrap_or_else(|| vec![crate::cluster::TOKEN_EXCHANGE_AUDIENCE.to_owned()]);
        if audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(format!(
                "{label}: audiences: give at least one, none empty (default api://AzureADTokenExchange)"
            ));
        }
        built.push(FederatedRecord {
            name: entry.name,
            issuer,
            subject: entry.subject,
            audiences,
        });
    }
    Ok(built)
}

/// Reads a PEM certificate credential: its thumbprints and its RSA public key.
pub fn load_certificate(path: &Path) -> Result<CertificateCredential, String> {
    use x509_parser::prelude::*;
    let pem_bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let (_, pem) = parse_x509_pem(&pem_bytes).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return Err(
            "the certificate's key is not RSA (Entra certificate credentials are RSA)".into(),
        );
    }
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| format!("notAfter out of range: {e}"))?;
    Ok(CertificateCredential {
        x5t: shared::assertion::thumbprint_sha1(&pem.contents),
        x5t_s256: shared::assertion::thumbprint_sha256(&pem.contents),
        public_key_der: spki.subject_public_key.data.to_vec(),
        not_after,
    })
}

fn check_guid(field: &str, value: &str) -> Result<(), String> {
    uuid::Uuid::parse_str(value)
        .map(|_| ())
        .map_err(|_| format!("{field}: '{value}' is not a GUID"))
}
