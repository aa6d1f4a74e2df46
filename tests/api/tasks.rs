//! The task API through HTTP: who may do what, what is recorded, and how bad input is answered;
//! each test on SQLite and on PostgreSQL.

use mesh_tests::api::*;
use reqwest::Method;
use serde_json::{Value, json};

struct Setup {
    _idp: TestIdp,
    api: TestApi,
    reader: String,
    writer: String,
}

mesh_tests::on_both_backends!(
    the_writer_creates_changes_and_deletes_and_the_reader_lists,
    a_repeated_external_id_is_a_conflict_naming_the_existing_task,
    bad_input_is_answered_with_the_field_and_the_right_status,
    listing_pages_with_a_cursor,
    tasks_survive_a_restart_on_the_same_database,
);

async fn setup(db: Db) -> Setup {
    let key = TestKey::generate("k1");
    let (idp, clock, api) = spawn_api_publishing_on(&key, 1, &db).await;
    let now = clock.unix();
    Setup {
        reader: key.mint(now, |_| {}),
        writer: key.mint(now, |c| {
            c["azp"] = json!(WRITER_ID);
            c["oid"] = json!(WRITER_SP);
            c["sub"] = json!(WRITER_SP);
            c["roles"] = json!(["Tasks.ReadWrite.All"]);
        }),
        _idp: idp,
        api,
    }
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().await.expect("json"))
}

async fn the_writer_creates_changes_and_deletes_and_the_reader_lists(db: Db) {
    let s = setup(db).await;
    let created = s
        .api
        .send_json(
            Method::POST,
            "/api/tasks",
            &s.writer,
            &json!({ "title": "  Rotate the keys ", "description": "before Friday" }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let task: Value = created.json().await.expect("json");
    assert_eq!(
        location,
        format!("/api/tasks/{}", task["id"].as_str().expect("id"))
    );
    assert_eq!(task["title"], "Rotate the keys", "trimmed");
    assert_eq!(task["status"], "open");
    assert_eq!(task["version"], 1);
    assert_eq!(task["created_by"], WRITER_ID);
    assert_eq!(
        task["created_at"], "2027-01-15T08:00:00Z",
        "the API's clock"
    );

    let listed = s.api.get_json("/api/tasks", Some(&s.reader)).await;
    assert_eq!(listed["items"][0]["id"], task["id"]);
    assert!(listed.get("next").is_none());

    let changed = s
        .api
        .send_json(
            Method::PATCH,
            &location,
            &s.writer,
            &json!({ "status": "done", "description": null, "version": 1 }),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(changed["status"], "done");
    assert_eq!(changed["description"], Value::Null);
    assert_eq!(changed["version"], 2);
    assert_eq!(changed["updated_by"], WRITER_ID);

    let stale = s
        .api
        .send_json(
            Method::PATCH,
            &location,
            &s.writer,
            &json!({ "title": "x", "version": 1 }),
        )
        .await;
    let (status, body) = problem(stale).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (409, Some("version_mismatch"))
    );
    assert_eq!(body["current_version"], 2);

    let fetched = s.api.get_json(&location, Some(&s.writer)).await;
    assert_eq!(fetched, changed);

    let deleted = s
        .api
        .request(Method::DELETE, &location, Some(&s.writer))
        .send()
        .await
        .expect("answers");
    assert_eq!(deleted.status(), 204);
    let (status, body) = problem(s.api.get(&location, Some(&s.writer)).await).await;
    assert_eq!((status, body["reason"].as_str()), (404, Some("not_found")));
}

async fn a_repeated_external_id_is_a_conflict_naming_the_existing_task(db: Db) {
    let s = setup(db).await;
    let body = json!({ "title": "nightly import 2027-01-15", "external_id": "import:2027-01-15" });
    let first: Value = s
        .api
        .send_json(Method::POST, "/api/tasks", &s.writer, &body)
        .await
        .json()
        .await
        .expect("json");
    let (status, problem) = problem(
        s.api
            .send_json(Method::POST, "/api/tasks", &s.writer, &body)
            .await,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(problem["reason"], "duplicate_external_id");
    assert_eq!(problem["existing_id"], first["id"]);
    let listed = s.api.get_json("/api/tasks", Some(&s.reader)).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "nothing duplicated"
    );
}

async fn bad_input_is_answered_with_the_field_and_the_right_status(db: Db) {
    let s = setup(db).await;
    let (api, writer) = (&s.api, s.writer.as_str());
    let post = move |body: Value| {
        let request = api.request(Method::POST, "/api/tasks", Some(writer));
        async move { request.json(&body).send().await.expect("answers") }
    };
    // A well-formed task id that names no task.
    let patch_absent = move |body: Value| async move {
        api.send_json(
            Method::PATCH,
            "/api/tasks/6f1c6a52-8a3e-4a0e-9d55-0d9c2b0c8e11",
            writer,
            &body,
        )
        .await
    };
    let cases: Vec<(&str, reqwest::Response, u16, &str, Option<&str>)> = vec![
        (
            "unknown field",
            post(json!({ "title": "t", "priority": 1 })).await,
            422,
            "invalid_field",
            Some("priority"),
        ),
        (
            "missing title",
            post(json!({ "description": "d" })).await,
            422,
            "invalid_field",
            Some("title"),
        ),
        (
            "wrong type",
            post(json!({ "title": 5 })).await,
            422,
            "invalid_field",
            Some("title"),
        ),
        (
            "empty title",
            post(json!({ "title": "   " })).await,
            422,
            "invalid_field",
            Some("title"),
        ),
        (
            "long title",
            post(json!({ "title": "x".repeat(201) })).await,
            422,
            "invalid_field",
            Some("title"),
        ),
        (
            "control character",
            post(json!({ "title": "a\u{7}b" })).await,
            422,
            "invalid_field",
            Some("title"),
        ),
        (
            "long description",
            post(json!({ "title": "t", "description": "d".repeat(4001) })).await,
            422,
            "invalid_field",
            Some("description"),
        ),
        (
            "bad status",
            post(json!({ "title": "t", "status": "later" })).await,
            422,
            "invalid_field",
            Some("status"),
        ),
        (
            "bad external id",
            post(json!({ "title": "t", "external_id": "a b" })).await,
            422,
            "invalid_field",
            Some("external_id"),
        ),
        (
            "not JSON",
            s.api
                .request(Method::POST, "/api/tasks", Some(&s.writer))
                .header("content-type", "application/json")
                .body("{\"title\":")
                .send()
                .await
                .expect("answers"),
            400,
            "malformed_request",
            None,
        ),
        (
            "not a JSON media type",
            s.api
                .request(Method::POST, "/api/tasks", Some(&s.writer))
                .header("content-type", "text/plain")
                .body("{}")
                .send()
                .await
                .expect("answers"),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "body too large",
            post(json!({ "title": "t", "description": "d".repeat(70 * 1024) })).await,
            413,
            "payload_too_large",
            None,
        ),
        (
            "empty patch",
            patch_absent(json!({})).await,
            422,
            "invalid_field",
            Some("body"),
        ),
        (
            "null title",
            patch_absent(json!({ "title": null })).await,
            422,
            "invalid_field",
            Some("title"),
        ),
        (
            "no such task",
            patch_absent(json!({ "title": "x" })).await,
            404,
            "not_found",
            None,
        ),
        (
            "not a task id",
            s.api.get("/api/tasks/..%2F..%2Fetc", Some(&s.writer)).await,
            404,
            "not_found",
            None,
        ),
        (
            "limit out of range",
            s.api.get("/api/tasks?limit=0", Some(&s.reader)).await,
            422,
            "invalid_field",
            Some("limit"),
        ),
        (
            "bad cursor",
            s.api.get("/api/tasks?after=abc", Some(&s.reader)).await,
            422,
            "invalid_field",
            Some("after"),
        ),
        (
            "unknown query parameter",
            s.api.get("/api/tasks?sort=desc", Some(&s.reader)).await,
            400,
            "malformed_request",
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, response, status, reason, field) in cases {
        let (got_status, body) = problem(response).await;
        let got = (
            got_status,
            body["reason"].as_str().unwrap_or_default().to_owned(),
            body["field"].as_str().map(str::to_owned),
        );
        if got != (status, reason.to_owned(), field.map(str::to_owned))
            || body["request_id"].as_str().is_none_or(str::is_empty)
        {
            failures.push(format!("{name}: got {got:?} {body}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let listed = s.api.get_json("/api/tasks", Some(&s.reader)).await;
    assert_eq!(listed["items"], json!([]), "nothing was stored");
}

async fn listing_pages_with_a_cursor(db: Db) {
    let s = setup(db).await;
    for i in 0..5 {
        let r = s
            .api
            .send_json(
                Method::POST,
                "/api/tasks",
                &s.writer,
                &json!({ "title": format!("t{i}") }),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let mut titles = Vec::new();
    let mut path = "/api/tasks?limit=2".to_owned();
    loop {
        let page = s.api.get_json(&path, Some(&s.reader)).await;
        titles.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|t| t["title"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/api/tasks?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(titles, ["t0", "t1", "t2", "t3", "t4"]);
}

async fn tasks_survive_a_restart_on_the_same_database(db: Db) {
    let key = TestKey::generate("k1");
    let (idp, clock, first) = spawn_api_publishing_on(&key, 2, &db).await;
    let writer = key.mint(clock.unix(), |c| {
        c["azp"] = json!(WRITER_ID);
        c["roles"] = json!(["Tasks.ReadWrite.All"]);
    });
    let created: Value = first
        .send_json(
            Method::POST,
            "/api/tasks",
            &writer,
            &json!({ "title": "keep me" }),
        )
        .await
        .json()
        .await
        .expect("json");
    first.handle.stop(true).await;
    let second = spawn_api_with(&idp.server.uri(), &clock, first.db.clone(), |s| {
        db.apply(&mut s.database)
    })
    .await;
    let path = format!("/api/tasks/{}", created["id"].as_str().expect("id"));
    let fetched = second.get_json(&path, Some(&writer)).await;
    assert_eq!(fetched, created);
}
