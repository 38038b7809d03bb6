#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The browser UI end to end in real headless Chromium (Debian's `chromium` driven through
//! `chromedriver`, installed by scripts/test) against a real server and the scripted LLM: a
//! first-run setup, a message streamed back as rendered markdown, a tool call approved in the
//! page with its streamed output, a second workstream in parallel, plan review, logging out
//! and in, and a phone-width layout.

mod browser_support;
mod support;

use browser_support::{browser, click, shot, type_into, until_js};
use fantoccini::Locator;
use support::TestServer;
use turnstone_tests::llm::Turn;

/// Every visible control has an accessible name, and takes up room on the screen.
async fn controls_have_names(c: &fantoccini::Client) {
    let nameless = c
        .execute(
            "return JSON.stringify([...document.querySelectorAll('button, a, input, select, textarea')]\
               .filter(e => e.offsetParent !== null)\
               .filter(e => { const r = e.getBoundingClientRect(); \
                 const name = (e.getAttribute('aria-label') || e.textContent || e.labels?.[0]?.textContent || '').trim(); \
                 return !name || r.width < 8 || r.height < 8 || r.right > window.innerWidth + 1; })\
               .map(e => e.outerHTML.slice(0, 200)))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(nameless, "[]", "controls without a name or not visible");
}

#[tokio::test]
async fn a_user_sets_up_chats_approves_and_runs_workstreams_in_parallel() {
    let s = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.jwt_secret = Some("browser-test-secret-0123456789abcdef".into());
    })
    .await;
    s.llm.route(
        "hello from tab two",
        Turn::text("Second tab answers **in parallel**."),
    );
    s.llm.push_turn(
        Turn::new()
            .reasoning("The user wants the shell checked.")
            .content("Let me check.")
            .tool_call("c1", "bash", r#"{"command": "echo hello-from-bash"}"#)
            .usage(1200, 40),
    );
    s.llm
        .push_turn(Turn::text("The command printed `hello-from-bash`. **Done.**").usage(1300, 20));
    let (c, _driver) = browser().await;
    c.goto(&s.url("/")).await.unwrap();

    // First run: create the account.
    until_js(&c, "!document.querySelector('#setup-form').hidden").await;
    type_into(&c, "#setup-form [name=username]", "ada").await;
    type_into(&c, "#setup-form [name=display_name]", "Ada").await;
    type_into(&c, "#setup-form [name=password]", "correct horse").await;
    click(&c, "#setup-form button[type=submit]").await;
    until_js(&c, "!document.querySelector('#app').hidden && document.querySelector('.tab .name')?.textContent === 'default'").await;

    // The controls explain themselves: drawn icons with labels, names for assistive
    // technology, the model and usage in the bar, and an empty state that says what to do.
    controls_have_names(&c).await;
    let labels = until_js(
        &c,
        "['#new-ws', '#sessions-btn', '#logout'].map(s => { const b = document.querySelector(s); return b.querySelector('svg') && b.textContent.trim(); }).join('|')",
    )
    .await;
    assert_eq!(labels, "New|Sessions|Log out");
    until_js(
        &c,
        "document.querySelector('.view.active .empty')?.textContent.includes('Start with a message')",
    )
    .await;
    until_js(
        &c,
        "document.querySelector('#model-name').textContent === 'scripted-model'",
    )
    .await;
    until_js(
        &c,
        "document.querySelector('#usage').textContent === '0 tokens used'",
    )
    .await;
    shot(&c, "node-ui-empty").await;

    // A message: streamed, a tool call to approve, its output, the rendered answer.
    type_into(&c, "#input", "please check the shell").await;
    click(&c, "#send").await;
    until_js(
        &c,
        "document.querySelector('.msg.user')?.textContent === 'please check the shell'",
    )
    .await;
    until_js(
        &c,
        "document.querySelector('.approval')?.textContent.includes('bash')",
    )
    .await;
    until_js(
        &c,
        "[...document.querySelectorAll('.view.active details.reasoning')].some(d => !d.hidden && d.textContent.includes('The user wants the shell checked.'))",
    )
    .await;
    assert_eq!(
        until_js(
            &c,
            "document.querySelector('.tab.active .sym')?.getAttribute('aria-label')"
        )
        .await,
        "attention",
        "the tab shows the workstream waits for attention"
    );
    let head = until_js(&c, "document.querySelector('.tool .head')?.textContent").await;
    assert!(
        head.as_str().unwrap().contains("echo hello-from-bash"),
        "{head}"
    );
    shot(&c, "node-ui-approval").await;
    controls_have_names(&c).await;
    click(&c, ".approval .approve").await;
    until_js(
        &c,
        "document.querySelector('.tool pre.output')?.textContent.includes('hello-from-bash')",
    )
    .await;
    let strong = until_js(
        &c,
        "document.querySelector('.msg.assistant:last-of-type .content strong')?.textContent",
    )
    .await;
    assert_eq!(strong, "Done.", "markdown is rendered");
    let code = until_js(
        &c,
        "document.querySelector('.msg.assistant:last-of-type .content code')?.textContent",
    )
    .await;
    assert_eq!(code, "hello-from-bash");
    let usage = until_js(&c, "document.querySelector('#usage').textContent").await;
    assert!(
        usage.as_str().unwrap().starts_with("1320 tokens"),
        "{usage}"
    );
    until_js(
        &c,
        "document.querySelector('.tab.active .sym')?.getAttribute('aria-label') === 'idle' && !document.querySelector('.view.active .empty')",
    )
    .await;

    // A second workstream, used while the first keeps its conversation.
    click(&c, "#new-ws").await;
    until_js(&c, "document.querySelectorAll('.tab').length === 2 && document.querySelectorAll('.tab')[1].classList.contains('active')").await;
    until_js(&c, "!!document.querySelector('.view.active .empty')").await;
    controls_have_names(&c).await;
    type_into(&c, "#input", "hello from tab two").await;
    c.find(Locator::Css("#input"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap(); // Enter sends
    until_js(
        &c,
        "document.querySelector('.view.active .content strong')?.textContent === 'in parallel'",
    )
    .await;
    click(&c, ".tab:first-child .name").await;
    let first = until_js(&c, "document.querySelector('.view.active')?.textContent").await;
    assert!(
        first.as_str().unwrap().contains("hello-from-bash"),
        "the first tab kept its stream"
    );

    // Close the second tab, then resume the first conversation from the saved sessions.
    click(&c, ".tab:nth-child(2) .close").await;
    until_js(&c, "document.querySelectorAll('.tab').length === 1").await;
    click(&c, "#sessions-btn").await;
    until_js(
        &c,
        "document.querySelectorAll('#sessions .session[data-session]').length >= 1",
    )
    .await;
    let first_session = s.state.node.manager.list()[0].session_id().to_owned();
    click(
        &c,
        &format!("#sessions .session[data-session='{first_session}']"),
    )
    .await;
    until_js(&c, "document.querySelectorAll('.tab').length === 2").await;
    until_js(
        &c,
        "document.querySelector('.view.active')?.textContent.includes('hello-from-bash')",
    )
    .await;
    click(&c, ".tab:nth-child(2) .close").await;
    until_js(&c, "document.querySelectorAll('.tab').length === 1").await;
    click(&c, "#new-ws").await;
    until_js(&c, "document.querySelectorAll('.tab').length === 2").await;

    // Phone width: nothing overflows sideways and the composer stays usable.
    c.set_window_size(390, 844).await.unwrap();
    until_js(
        &c,
        "document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await;
    let send = c.find(Locator::Css("#send")).await.unwrap();
    assert!(send.is_displayed().await.unwrap());
    controls_have_names(&c).await;
    shot(&c, "node-ui-phone").await;
    c.set_window_size(1280, 900).await.unwrap();

    // Log out and back in with the password.
    click(&c, "#logout").await;
    until_js(&c, "!document.querySelector('#login-form').hidden").await;
    type_into(&c, "#login-form [name=username]", "ada").await;
    type_into(&c, "#login-form [name=password]", "wrong password").await;
    click(&c, "#login-form button[type=submit]").await;
    until_js(
        &c,
        "document.querySelector('#auth-error').textContent === 'Invalid credentials'",
    )
    .await;
    type_into(&c, "#login-form [name=password]", "correct horse").await;
    click(&c, "#login-form button[type=submit]").await;
    until_js(&c, "document.querySelectorAll('.tab').length === 2").await;
    // The reloaded page shows the conversation from history.
    until_js(
        &c,
        "document.querySelector('.view.active')?.textContent.includes('please check the shell')",
    )
    .await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn plans_are_reviewed_in_the_page() {
    let s = TestServer::start().await;
    std::fs::write(s.work.path().join("notes.txt"), "todo: ship it").unwrap();
    s.llm
        .push_turn(Turn::new().tool_call("p1", "plan", r#"{"prompt": "plan the release"}"#));
    s.llm.push_turn(Turn::text("## Goal\nShip **it**."));
    s.llm.push_turn(Turn::text("Plan approved; shipping."));
    let (c, _driver) = browser().await;
    c.goto(&s.url("/")).await.unwrap();
    until_js(&c, "document.querySelector('.tab')").await;
    type_into(&c, "#input", "make a plan").await;
    click(&c, "#send").await;
    click(&c, ".approval .approve").await;
    let goal = until_js(
        &c,
        "document.querySelector('.plan .content h2')?.textContent",
    )
    .await;
    assert_eq!(goal, "Goal");
    controls_have_names(&c).await;
    click(&c, ".plan .plan-approve").await;
    until_js(
        &c,
        "document.querySelector('.view.active').textContent.includes('Plan approved; shipping.')",
    )
    .await;
    c.close().await.unwrap();
}
