#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The console's admin pages in real headless Chromium over a real node on a real Redis:
//! create a user, make a token (shown once, copied), link a chat account, build a schedule
//! with the live preview, and watch it fire a workstream on the node that the dashboard
//! shows; its runs, the enable toggle, and delete with confirmation.

mod browser_support;
mod cluster_support;
mod console_support;

use std::time::Duration;

use browser_support::{browser, click, shot, type_into, until_js};
use cluster_support::{Cluster, Db};
use console_support::{TestConsole, quick};
use turnstone_actors::config::{
    AuthConfig, DatabaseConfig, RateLimitConfig, StaticToken, TokenRole,
};
use turnstone_actors::storage::Store;
use turnstone_gateways::console::ConsoleOptions;
use turnstone_gateways::console::link::Link;
use turnstone_gateways::console::schedules::{Clock, SchedulerSettings};
use turnstone_gateways::web::service_token::Credentials;
use turnstone_tests::llm::Turn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_manages_users_and_schedules_work_that_lands_on_a_node() {
    let cluster = Cluster::start(&["node-a"], Db::Sqlite).await;
    cluster
        .llm
        .route("check the nightly backups", Turn::text("Backups are fine."));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&DatabaseConfig {
        path: dir.path().join("console.db").display().to_string(),
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    let console = TestConsole::start_options(ConsoleOptions {
        link: Link::redis(&cluster.redis, &cluster.prefix),
        credentials: Credentials::None,
        collector: quick(),
        auth: AuthConfig {
            enabled: true,
            tokens: vec![StaticToken {
                value: "operator-token".into(),
                role: TokenRole::Full,
            }],
            ..AuthConfig::default()
        },
        ratelimit: RateLimitConfig::default(),
        store: Some(store),
        scheduler: SchedulerSettings {
            interval: Duration::from_millis(300),
            ..SchedulerSettings::default()
        },
        clock: Clock::System,
    })
    .await;

    let (c, _driver) = browser().await;
    c.goto(&console.url("/")).await.unwrap();
    // A console with a database and no users asks for the first account.
    until_js(&c, "!document.querySelector('#setup-form').hidden").await;
    type_into(&c, "#setup-form [name=username]", "root").await;
    type_into(&c, "#setup-form [name=display_name]", "Operator").await;
    type_into(&c, "#setup-form [name=password]", "correct horse battery").await;
    click(&c, "#setup-form button[type=submit]").await;
    until_js(&c, "!document.querySelector('#app').hidden").await;
    // The node is known before the admin view is opened (its id is a schedule target).
    until_js(
        &c,
        "document.querySelector('#node-table').textContent.includes('node-a')",
    )
    .await;
    click(&c, "#nav-admin").await;
    until_js(&c, "!document.querySelector('#view-admin').hidden && document.querySelector('tr[data-user=root]')").await;

    // A user.
    type_into(&c, "#user-form [name=username]", "ada").await;
    type_into(&c, "#user-form [name=display_name]", "Ada Lovelace").await;
    type_into(&c, "#user-form [name=password]", "short").await;
    click(&c, "#user-form button[type=submit]").await;
    // The browser's own check refuses a short password before the request.
    until_js(
        &c,
        "document.querySelector('#user-form [name=password]').validity.tooShort",
    )
    .await;
    type_into(&c, "#user-form [name=password]", "analytical engine").await;
    click(&c, "#user-form button[type=submit]").await;
    until_js(
        &c,
        "document.querySelector('tr[data-user=ada]')?.textContent.includes('Ada Lovelace')",
    )
    .await;

    // A token: shown once, copied.
    click(
        &c,
        "tr[data-user=ada] button[aria-label='Tokens and chat links of ada']",
    )
    .await;
    until_js(&c, "!document.querySelector('#user-detail').hidden").await;
    type_into(&c, "#token-form [name=name]", "ci").await;
    click(&c, "#token-form button[type=submit]").await;
    let token = until_js(&c, "!document.querySelector('#token-new').hidden && document.querySelector('#token-secret').textContent").await;
    let token = token.as_str().unwrap().to_owned();
    assert!(token.starts_with("ts_") && token.len() == 67, "{token}");
    until_js(
        &c,
        "document.querySelector('#token-table tbody').textContent.includes('ci')",
    )
    .await;
    let listed = until_js(&c, "document.querySelector('#token-table').textContent").await;
    assert!(
        !listed.as_str().unwrap().contains(&token[8..]),
        "the table never shows the secret"
    );
    click(&c, "#token-copy").await;
    until_js(&c, "['Copied', 'Selected — press Ctrl+C'].includes(document.querySelector('#token-copy').textContent)").await;
    let status = console
        .http
        .get(console.url("/v1/api/cluster/overview"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "the token made in the page works");

    // A chat link.
    type_into(&c, "#link-form [name=channel_type]", "Matrix").await;
    type_into(&c, "#link-form [name=channel_user_id]", "@ada:example.org").await;
    click(&c, "#link-form button[type=submit]").await;
    until_js(
        &c,
        "document.querySelector('#link-table tbody').textContent.includes('@ada:example.org')",
    )
    .await;
    let platform = until_js(
        &c,
        "document.querySelector('#link-table tbody td').textContent",
    )
    .await;
    assert_eq!(platform, "matrix");

    // A schedule: the live preview follows the expression and its zone.
    click(&c, "#schedule-new").await;
    until_js(&c, "document.querySelector('#schedule-modal').open").await;
    type_into(&c, "#schedule-form [name=name]", "weekday digest").await;
    type_into(&c, "#schedule-form [name=cron_expr]", "0 9 * * 1-5").await;
    type_into(&c, "#schedule-form [name=timezone]", "Asia/Tokyo").await;
    until_js(&c, "document.querySelectorAll('#schedule-preview li').length === 5 && document.querySelector('#schedule-preview li').textContent.includes('T09:00:00+09:00')").await;
    shot(&c, "console-schedule-modal").await;
    type_into(&c, "#schedule-form [name=cron_expr]", "0 9 * *").await;
    until_js(&c, "document.querySelector('#schedule-preview li.error')?.textContent.includes('expected 5 fields')").await;
    type_into(&c, "#schedule-form [name=cron_expr]", "0 9 * * 1-5").await;
    // The preview settles before the form is sent (it is what a person would look at).
    until_js(
        &c,
        "document.querySelectorAll('#schedule-preview li').length === 5",
    )
    .await;
    type_into(
        &c,
        "#schedule-form [name=initial_message]",
        "summarise the week",
    )
    .await;
    click(&c, "#schedule-save").await;
    until_js(&c, "!document.querySelector('#schedule-modal').open && document.querySelector('tr[data-schedule=\"weekday digest\"]')").await;

    // One that fires in a few seconds on node-a.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    click(&c, "#schedule-new").await;
    until_js(&c, "document.querySelector('#schedule-modal').open").await;
    type_into(&c, "#schedule-form [name=name]", "backup check").await;
    c.execute(
        "const s = document.querySelector('#schedule-form [name=schedule_type]'); s.value = 'at'; s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    until_js(
        &c,
        "!document.querySelector('#schedule-form .at-only').hidden",
    )
    .await;
    type_into(&c, "#schedule-form [name=at_time]", &at).await;
    until_js(
        &c,
        "document.querySelectorAll('#schedule-preview li').length === 1",
    )
    .await;
    let has_node = until_js(
        &c,
        "[...document.querySelector('#schedule-target').options].some(o => o.value === 'node-a')",
    )
    .await;
    assert_eq!(has_node, true);
    c.execute(
        "document.querySelector('#schedule-target').value = 'node-a';",
        vec![],
    )
    .await
    .unwrap();
    type_into(
        &c,
        "#schedule-form [name=initial_message]",
        "check the nightly backups",
    )
    .await;
    click(&c, "#schedule-save").await;
    until_js(
        &c,
        "document.querySelector('tr[data-schedule=\"backup check\"]')",
    )
    .await;

    shot(&c, "console-admin").await;
    // It fires: the node gets the workstream and its first message, and the dashboard shows it.
    cluster
        .wait_for_model_request("check the nightly backups")
        .await;
    click(&c, "#nav-ws").await;
    until_js(&c, "document.querySelector('#ws-table tbody').textContent.includes('backup check') && document.querySelector('#ws-table tbody').textContent.includes('node-a')").await;

    // Its run, recorded.
    click(&c, "#nav-admin").await;
    click(
        &c,
        "tr[data-schedule=\"backup check\"] button[aria-label='Runs of schedule backup check']",
    )
    .await;
    until_js(&c, "document.querySelector('#run-table tbody').textContent.includes('dispatched') && document.querySelector('#run-table tbody').textContent.includes('node-a')").await;
    until_js(&c, "document.querySelector('tr[data-schedule=\"backup check\"] input[type=checkbox]').checked === false").await;

    // The enable toggle.
    click(
        &c,
        "tr[data-schedule=\"weekday digest\"] input[type=checkbox]",
    )
    .await;
    until_js(
        &c,
        "document.querySelector('tr[data-schedule=\"weekday digest\"]').textContent.includes('—')",
    )
    .await;
    let (_, listed) = admin_get(&console, "/v1/api/admin/schedules").await;
    let digest = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "weekday digest")
        .unwrap()
        .clone();
    assert_eq!(
        (digest["enabled"].as_bool(), digest["next_run"].as_str()),
        (Some(false), Some(""))
    );

    // Delete, after confirming.
    click(
        &c,
        "tr[data-schedule=\"weekday digest\"] button[aria-label='Delete schedule weekday digest']",
    )
    .await;
    until_js(&c, "document.querySelector('#confirm-modal').open").await;
    click(&c, "#confirm-modal button[value=cancel]").await;
    until_js(&c, "!document.querySelector('#confirm-modal').open && document.querySelector('tr[data-schedule=\"weekday digest\"]')").await;
    click(
        &c,
        "tr[data-schedule=\"weekday digest\"] button[aria-label='Delete schedule weekday digest']",
    )
    .await;
    click(&c, "#confirm-yes").await;
    until_js(
        &c,
        "!document.querySelector('tr[data-schedule=\"weekday digest\"]')",
    )
    .await;

    // Every control of the view is named and every field labelled.
    let unnamed = until_js(
        &c,
        "JSON.stringify([...document.querySelectorAll('#view-admin button, #schedule-modal button, #view-admin input, #schedule-modal input, #schedule-modal select, #schedule-modal textarea')].filter(e => { const name = (e.getAttribute('aria-label') || e.textContent || '').trim() || (e.labels && e.labels.length && e.labels[0].textContent.trim()); return !name; }).map(e => e.outerHTML))",
    )
    .await;
    assert_eq!(unnamed, "[]", "controls without a name: {unnamed}");
    c.close().await.unwrap();
    console.stop().await;
}

async fn admin_get(console: &TestConsole, path: &str) -> (u16, serde_json::Value) {
    let r = console
        .http
        .get(console.url(path))
        .bearer_auth("operator-token")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}
