//! Invalid directory files are refused with the file, the entry and the reason.

use entra_emulator::directory::Directory;
use mesh_tests::demo::demo_dir;
use std::path::Path;

const TENANT: &str = "[[tenants]]\nid = \"a1000000-0000-4000-8000-000000000001\"\ndomain = \"contoso.onmicrosoft.com\"\n";

fn app(name: &str, client_id: &str, extra: &str) -> String {
    format!(
        "[[tenants.applications]]\nname = \"{name}\"\nclient_id = \"{client_id}\"\nservice_principal_id = \"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\"\n{extra}\n"
    )
}

fn refused(text: &str) -> String {
    let err =
        Directory::parse(text, Path::new("/etc/emulator/directory.toml")).expect_err("refused");
    let message = format!("{err:#}");
    assert!(
        message.starts_with("directory /etc/emulator/directory.toml: "),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

#[test]
fn the_demo_directory_loads() {
    let path = demo_dir().join("directory.toml");
    let directory = Directory::load(&path).expect("demo directory is valid");
    let tenant = directory
        .tenant("contoso.onmicrosoft.com")
        .expect("tenant by domain");
    // The file's 9 applications and its managed identity, then Microsoft's first-party
    // resources every tenant holds.
    let names: Vec<&str> = tenant
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names.len(), 14, "{names:?}");
    assert_eq!(names[9], "nightly-mi");
    assert_eq!(
        names[10..],
        [
            "microsoft-graph",
            "azure-resource-manager",
            "azure-key-vault",
            "azure-storage"
        ]
    );
    assert_eq!(tenant.users.len(), 1);
}

#[test]
fn a_file_that_declares_a_first_party_app_keeps_its_own() {
    let text = format!(
        "{TENANT}{}",
        app(
            "graph",
            "00000003-0000-0000-c000-000000000000",
            "identifier_uris = [\"https://graph.microsoft.com\"]\napp_roles = [\"Custom.Role\"]"
        )
    );
    let directory =
        Directory::parse(&text, Path::new("/etc/emulator/directory.toml")).expect("valid");
    let tenant = &directory.tenants[0];
    let graph = tenant
        .resource("https://graph.microsoft.com")
        .expect("graph");
    assert_eq!(graph.name, "graph", "the file's, not the built-in one");
    assert_eq!(graph.app_roles, ["Custom.Role"]);
    assert!(tenant.application("microsoft-graph").is_none());
    assert!(tenant.resource("https://management.azure.com/").is_some());
}

#[test]
fn a_bad_guid_names_the_entry_and_field() {
    let message = refused(&format!("{TENANT}{}", app("reader", "not-a-guid", "")));
    assert!(
        message.contains("applications[0] (reader): client_id: 'not-a-guid' is not a GUID"),
        "{message}"
    );
}

#[test]
fn an_undeclared_role_is_refused() {
    let text = format!(
        "{TENANT}{}{}[[tenants.role_assignments]]\nclient = \"job\"\nresource = \"api\"\nroles = [\"Nope.All\"]\n",
        app(
            "api",
            "a1000000-0000-4000-8000-000000000002",
            "app_roles = [\"Tasks.Read.All\"]"
        ),
        app("job", "a1000000-0000-4000-8000-000000000003", ""),
    );
    let message = refused(&text);
    assert!(
        message.contains("role_assignments[0]: roles: 'Nope.All' is not an app role of 'api'"),
        "{message}"
    );
}

#[test]
fn duplicate_client_ids_are_refused() {
    let id = "a1000000-0000-4000-8000-000000000002";
    let message = refused(&format!("{TENANT}{}{}", app("a", id, ""), app("b", id, "")));
    assert!(message.contains("applications[1] (b)"), "{message}");
}

#[test]
fn unknown_fields_and_bad_syntax_are_refused() {
    let message = refused(&format!(
        "{TENANT}{}",
        app(
            "a",
            "a1000000-0000-4000-8000-000000000002",
            "colour = \"red\""
        )
    ));
    assert!(message.contains("colour"), "{message}");
    let message = refused("[[tenants]\nid = ");
    assert!(message.contains("line"), "{message}");
}

#[test]
fn a_missing_certificate_file_is_named() {
    let message = refused(&format!(
        "{TENANT}{}[[tenants.applications.certificates]]\npath = \"certs/missing.crt\"\n",
        app("cert", "a1000000-0000-4000-8000-000000000005", "")
    ));
    assert!(
        message.contains("certificates[0] (/etc/emulator/certs/missing.crt): cannot read"),
        "{message}"
    );
}

#[test]
fn an_invalid_secret_expiry_is_refused() {
    let message = refused(&format!(
        "{TENANT}{}[[tenants.applications.client_secrets]]\nvalue = \"0123456789abcdefghij\"\nexpires = \"next tuesday\"\n",
        app("job", "a1000000-0000-4000-8000-000000000003", "")
    ));
    assert!(
        message.contains("client_secrets[0]: expires: not an RFC 3339 time"),
        "{message}"
    );
}

#[test]
fn federated_credentials_are_checked_as_entra_checks_them() {
    let fic = |issuer: &str, extra: &str| {
        format!(
            "[[tenants.applications.federated_credentials]]\nname = \"ci-main\"\nissuer = \"{issuer}\"\nsubject = \"repo:contoso/app:ref:refs/heads/main\"\n{extra}\n"
        )
    };
    let with = |credentials: &str| {
        format!(
            "{TENANT}{}{credentials}",
            app("job", "a1000000-0000-4000-8000-000000000003", "")
        )
    };
    let message = refused(&with(&fic("http://token.example.com", "")));
    assert!(
        message.contains(
            "applications[0] (job): federated_credentials[0] (ci-main): issuer: 'http://token.example.com' must be an HTTPS URL"
        ),
        "{message}"
    );
    let message = refused(&with(&format!(
        "{}{}",
        fic("https://token.example.com", ""),
        fic("cluster", "")
    )));
    assert!(
        message.contains("federated_credentials[1] (ci-main): name: repeats another credential's"),
        "{message}"
    );
    let message = refused(&with(&fic("cluster", "audiences = []")));
    assert!(
        message.contains("federated_credentials[0] (ci-main): audiences: give at least one"),
        "{message}"
    );

    let message = refused(&with(
        &fic("https://token.example.com", "").replace("ci-main", "ci/main"),
    ));
    assert!(
        message.contains("name: 3 to 120 letters, digits, '-' or '_'"),
        "{message}"
    );
    let system_assigned = format!(
        "{TENANT}[[tenants.managed_identities]]\nname = \"vm\"\nclient_id = \"a1000000-0000-4000-8000-000000000009\"\nprincipal_id = \"a1000000-0000-4000-8000-00000000000a\"\nresource_id = \"/subscriptions/0/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm\"\n{}",
        fic("https://token.example.com", "")
            .replace("tenants.applications.", "tenants.managed_identities.")
    );
    let message = refused(&system_assigned);
    assert!(
        message.contains("only a user-assigned identity"),
        "{message}"
    );

    let directory = Directory::parse(
        &with(&fic("https://token.example.com", "")),
        Path::new("/etc/emulator/directory.toml"),
    )
    .expect("valid");
    let job = directory.tenants[0].application("job").expect("job");
    assert_eq!(
        job.federated_credentials[0].audiences,
        ["api://AzureADTokenExchange"],
        "the default audience"
    );
}
