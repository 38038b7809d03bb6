//! The channel gateway's Slack adapter against a loopback Slack that speaks the documented
//! Web API and Socket Mode protocol (`turnstone_tests::slack`), with a real node and Redis
//! behind it (scripted model). Each test also asserts the fake saw no malformed call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod channel_support;
mod cluster_support;

use std::time::Duration;

use channel_support::{Platforms, suffix, turnstone_user};
use cluster_support::Cluster;
use serde_json::json;
use turnstone_actors::storage::Store;
use turnstone_gateways::channel::Running;
use turnstone_gateways::channel::router::RouteSettings;
use turnstone_gateways::channel::slack::SlackSettings;
use turnstone_tests::llm::Turn;
use turnstone_tests::services::{PrivateRedis, redis_url};
use turnstone_tests::slack::{FakeSlack, Posted};

const BOT_TOKEN: &str = "xoxb-fake-bot";
const APP_TOKEN: &str = "xapp-fake-app";
const CHANNEL: &str = "C0000001";
const ALICE: &str = "U0000001";
const BOB: &str = "U0000002";
const CAROL: &str = "U0000003";

struct World {
    cluster: Cluster,
    store: Store,
    slack: FakeSlack,
    gateway: Running,
}

async fn world(route: RouteSettings) -> World {
    world_on(&redis_url().unwrap(), route).await
}

async fn world_on(redis: &str, route: RouteSettings) -> World {
    let (cluster, store) = channel_support::cluster(redis, &[]).await;
    let slack = FakeSlack::start(BOT_TOKEN, APP_TOKEN).await;
    let platforms = Platforms {
        slack: Some(SlackSettings {
            bot_token: BOT_TOKEN.into(),
            app_token: APP_TOKEN.into(),
            api_url: Some(slack.api_url()),
        }),
        ..Platforms::default()
    };
    let gateway = channel_support::gateway(&cluster, &store, route, platforms).await;
    slack
        .wait("the Socket Mode connection", FakeSlack::connected)
        .await;
    World {
        cluster,
        store,
        slack,
        gateway,
    }
}

impl World {
    async fn link(&self, who: &str, name: &str) {
        let token = turnstone_user(&self.store, name).await;
        let envelope = self.slack.slash(who, CHANNEL, &format!("link {token}"));
        self.slack
            .wait("the link answer", |s| {
                s.ack(&envelope).is_some_and(|a| {
                    a["payload"]["text"] == format!("Linked to {name}.")
                        && a["payload"]["response_type"] == "ephemeral"
                })
            })
            .await;
    }

    fn shown(&self, thread: &str) -> Vec<Posted> {
        self.slack
            .thread(CHANNEL, thread)
            .into_iter()
            .filter(|m| m.only_for.is_none())
            .collect()
    }

    async fn wait_shown(&self, thread: &str, what: &str, done: impl Fn(&[Posted]) -> bool) {
        self.slack
            .wait(what, |s| {
                let shown: Vec<Posted> = s
                    .thread(CHANNEL, thread)
                    .into_iter()
                    .filter(|m| m.only_for.is_none())
                    .collect();
                done(&shown)
            })
            .await;
    }

    async fn wait_told(&self, thread: &str, user: &str, text: &str) {
        self.slack
            .wait(&format!("{user} told {text:?}"), |s| {
                s.thread(CHANNEL, thread)
                    .iter()
                    .any(|m| m.only_for.as_deref() == Some(user) && m.text == text)
            })
            .await;
    }

    fn assert_clean(&self) {
        assert_eq!(self.slack.violations(), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_mention_gets_a_thread_whose_owner_approves_with_buttons() {
    let w = world(RouteSettings::default()).await;
    let s = suffix();
    w.link(ALICE, &format!("alice{s}")).await;
    w.link(BOB, &format!("bob{s}")).await;
    let bash = json!({"command": "echo from-the-tool"}).to_string();
    w.cluster.llm.route_latest(
        "list the files",
        Turn::text("Let me look. ").tool_call("c1", "bash", &bash),
    );
    let answer: String = (0..12)
        .map(|i| format!("part {i} of the answer. "))
        .collect();
    let mut turn = Turn::new();
    for i in 0..12 {
        turn = turn.content(&format!("part {i} of the answer. "));
    }
    w.cluster
        .llm
        .route_latest_slowly("from-the-tool", turn, Duration::from_millis(400));

    let root = w
        .slack
        .say(ALICE, CHANNEL, None, "please list the files", true);
    w.wait_shown(&root, "the approval prompt", |m| {
        m.iter().any(|m| m.text == "Approval needed")
    })
    .await;
    let shown = w.shown(&root);
    assert_eq!(shown[0].text, "Let me look. ");
    let prompt = shown
        .iter()
        .find(|m| m.text == "Approval needed")
        .unwrap()
        .clone();
    let route = w
        .store
        .channel_route("slack", &format!("{CHANNEL}/{root}"))
        .await
        .unwrap()
        .unwrap();
    let buttons = prompt.blocks[1]["elements"].as_array().unwrap();
    let ids: Vec<&str> = buttons
        .iter()
        .map(|b| b["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ts:approve", "ts:reject", "ts:always"]);
    assert!(
        buttons[0]["value"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}|", route.ws_id))
    );

    // Bob's press: an ephemeral refusal only he sees; nothing runs.
    w.slack.press(BOB, &prompt.ts, "ts:approve");
    w.wait_told(&root, BOB, "Only the workstream's owner can answer this.")
        .await;
    let ran = |w: &World| {
        w.cluster
            .llm
            .chat_bodies()
            .iter()
            .any(|b| b.to_string().contains("from-the-tool\\n"))
    };
    assert!(!ran(&w), "the tool ran on Bob's press");

    // Alice's press runs it; the answer is one message below the prompt, updated at most
    // every 1.5 s.
    w.slack.press(ALICE, &prompt.ts, "ts:approve");
    w.wait_told(&root, ALICE, "Approved.").await;
    w.wait_shown(&root, "the whole answer", |m| {
        m.iter().any(|m| m.text == answer)
    })
    .await;
    let written = w
        .shown(&root)
        .into_iter()
        .find(|m| m.text == answer)
        .unwrap();
    assert!(written.posted > prompt.posted);
    assert!(!written.edits.is_empty());
    let mut times = vec![written.posted];
    times.extend(&written.edits);
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 1400, "updates {times:?}");
    }

    // In the thread: !status, then !close (refused to Bob).
    w.slack.say(ALICE, CHANNEL, Some(&root), "!status", false);
    w.slack
        .wait("the status", |s| {
            s.thread(CHANNEL, &root).iter().any(|m| {
                m.only_for.as_deref() == Some(ALICE)
                    && m.text.contains(&route.ws_id)
                    && m.text.contains("on node n1")
            })
        })
        .await;
    w.slack.say(BOB, CHANNEL, Some(&root), "!close", false);
    w.wait_told(&root, BOB, "Only the workstream's owner can close it.")
        .await;
    w.slack.say(ALICE, CHANNEL, Some(&root), "!close", false);
    w.wait_shown(&root, "Closed.", |m| m.iter().any(|m| m.text == "Closed."))
        .await;
    assert!(
        w.store
            .channel_route("slack", &format!("{CHANNEL}/{root}"))
            .await
            .unwrap()
            .is_none()
    );

    // A stranger's mention is ignored.
    let before = w.slack.requests().len();
    w.slack.say(CAROL, CHANNEL, None, "hello?", true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        w.slack.requests().len(),
        before,
        "the bot answered a stranger"
    );
    w.assert_clean();
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_sent_back_with_changes_said_in_the_thread() {
    let w = world(RouteSettings {
        auto_approve_tools: vec!["plan".into()],
        ..RouteSettings::default()
    })
    .await;
    w.link(ALICE, &format!("alice{}", suffix())).await;
    let plan = json!({"prompt": "plan the fix"}).to_string();
    w.cluster
        .llm
        .route_latest("make a plan", Turn::new().tool_call("p1", "plan", &plan));
    w.cluster
        .llm
        .route_latest("plan the fix", Turn::text("1. read\n2. fix"));
    w.cluster
        .llm
        .route_latest("use fewer steps", Turn::text("Revised: one step."));
    let root = w.slack.say(ALICE, CHANNEL, None, "make a plan", true);
    w.wait_shown(&root, "the plan review", |m| {
        m.iter().any(|m| m.text == "Plan for review")
    })
    .await;
    let review = w
        .shown(&root)
        .into_iter()
        .find(|m| m.text == "Plan for review")
        .unwrap();
    assert!(
        review.blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("1. read\n2. fix")
    );
    // Request Changes says how; the words in the thread go back to the model.
    w.slack.press(ALICE, &review.ts, "ts:plan_changes");
    w.wait_told(
        &root,
        ALICE,
        "Say `!changes <what to change>` in this thread.",
    )
    .await;
    w.slack.say(
        ALICE,
        CHANNEL,
        Some(&root),
        "!changes use fewer steps",
        false,
    );
    w.wait_shown(&root, "the revised answer", |m| {
        m.iter().any(|m| m.text == "Revised: one step.")
    })
    .await;
    w.assert_clean();
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_a_refreshed_connection_a_killed_actor_and_a_restarted_redis_are_survived() {
    let mut redis = PrivateRedis::start();
    let w = world_on(&redis.url(), RouteSettings::default()).await;
    w.link(ALICE, &format!("alice{}", suffix())).await;
    let mut turn = Turn::new();
    for i in 0..10 {
        turn = turn.content(&format!("slow {i}. "));
    }
    let whole: String = (0..10).map(|i| format!("slow {i}. ")).collect();
    w.cluster
        .llm
        .route_latest_slowly("first question", turn, Duration::from_millis(300));
    w.cluster
        .llm
        .route_latest("second question", Turn::text("Second answer."));
    w.cluster
        .llm
        .route_latest("third question", Turn::text("Third answer."));
    w.cluster
        .llm
        .route_latest("fourth question", Turn::text("Fourth answer."));
    w.slack.rate_limit("chat.update", 2, 2);
    let root = w.slack.say(ALICE, CHANNEL, None, "first question", true);
    w.wait_shown(&root, "the whole first answer", |m| {
        m.iter().any(|m| m.text == whole)
    })
    .await;
    let limited = w.slack.requests().iter().filter(|(_, s)| *s == 429).count();
    assert_eq!(limited, 2);

    // Slack asks the client to reconnect; it does, and the thread goes on.
    w.slack.disconnect();
    w.slack
        .wait("a new connection", |s| {
            s.connections() >= 2 && s.connected()
        })
        .await;
    w.slack
        .say(ALICE, CHANNEL, Some(&root), "second question", false);
    w.wait_shown(&root, "the second answer", |m| {
        m.iter().any(|m| m.text == "Second answer.")
    })
    .await;

    // The connection actor dies: its supervisor starts another, which connects again; the
    // old listener is gone, so the answer comes once.
    let connection = w.gateway.slack.get().unwrap();
    let connections = w.slack.connections();
    connection.kill();
    w.slack
        .wait("the restarted connection", |s| {
            s.connections() > connections && s.connected()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.slack
        .say(ALICE, CHANNEL, Some(&root), "third question", false);
    w.wait_shown(&root, "the third answer", |m| {
        m.iter().any(|m| m.text == "Third answer.")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers = w
        .shown(&root)
        .iter()
        .filter(|m| m.text == "Third answer.")
        .count();
    assert_eq!(answers, 1, "answered by two listeners");

    // Redis restarts under the gateway and the node; the thread goes on.
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.up();
    w.slack
        .say(ALICE, CHANNEL, Some(&root), "fourth question", false);
    w.wait_shown(&root, "the fourth answer", |m| {
        m.iter().any(|m| m.text == "Fourth answer.")
    })
    .await;
    w.assert_clean();
    w.gateway.shutdown().await;
}
