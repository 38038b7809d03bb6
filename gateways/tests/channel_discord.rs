//! The channel gateway's Discord adapter against a loopback Discord that speaks the
//! documented REST and gateway protocol (`turnstone_tests::discord`), with a real node and
//! Redis behind it (scripted model). The fake checks the shape of everything the adapter
//! sends; each test also asserts it saw no violation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod channel_support;
mod cluster_support;

use std::time::Duration;

use channel_support::{Platforms, suffix, turnstone_user};
use cluster_support::Cluster;
use serde_json::json;
use turnstone_actors::storage::Store;
use turnstone_gateways::channel::Running;
use turnstone_gateways::channel::discord::DiscordSettings;
use turnstone_gateways::channel::router::RouteSettings;
use turnstone_tests::discord::{BOT_ID, FakeDiscord, StoredMessage};
use turnstone_tests::llm::Turn;
use turnstone_tests::services::{PrivateRedis, redis_url};

const TOKEN: &str = "fake-bot-token";
const CHANNEL: &str = "800000000000000001";
const ALICE: &str = "700000000000000001";
const BOB: &str = "700000000000000002";
const CAROL: &str = "700000000000000003";

struct World {
    cluster: Cluster,
    store: Store,
    discord: FakeDiscord,
    gateway: Running,
}

async fn world(route: RouteSettings) -> World {
    world_on(&redis_url().unwrap(), route).await
}

async fn world_on(redis: &str, route: RouteSettings) -> World {
    let (cluster, store) = channel_support::cluster(redis, &[]).await;
    let discord = FakeDiscord::start(TOKEN).await;
    let platforms = Platforms {
        discord: Some(DiscordSettings {
            token: TOKEN.into(),
            guild: 0,
            channels: Vec::new(),
            api_url: Some(discord.api_url()),
            gateway_url: Some(discord.gateway_url()),
        }),
        ..Platforms::default()
    };
    let gateway = channel_support::gateway(&cluster, &store, route, platforms).await;
    // Identified, and the slash commands registered.
    discord
        .wait("the slash commands", |d| d.commands().len() == 5)
        .await;
    World {
        cluster,
        store,
        discord,
        gateway,
    }
}

impl World {
    async fn link(&self, who: &str, name: &str) {
        let token = turnstone_user(&self.store, name).await;
        let interaction = self
            .discord
            .slash(who, CHANNEL, "link", Some(("token", &token)));
        self.discord
            .wait("the link reply", |d| {
                d.response(&interaction).as_deref() == Some(&format!("Linked to {name}."))
            })
            .await;
    }

    /// The thread made from message `root`.
    async fn thread_of(&self, root: &str) -> String {
        self.discord
            .wait("the thread", |d| {
                d.threads().iter().any(|t| t.from_message == root)
            })
            .await;
        self.discord
            .threads()
            .into_iter()
            .find(|t| t.from_message == root)
            .unwrap()
            .id
    }

    fn shown(&self, thread: &str) -> Vec<StoredMessage> {
        self.discord.bot_messages(thread)
    }

    async fn wait_shown(&self, thread: &str, what: &str, done: impl Fn(&[StoredMessage]) -> bool) {
        self.discord
            .wait(what, |d| done(&d.bot_messages(thread)))
            .await;
    }

    fn assert_clean(&self) {
        assert_eq!(self.discord.violations(), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_opens_a_thread_whose_owner_approves_with_buttons() {
    let w = world(RouteSettings::default()).await;
    let s = suffix();
    w.link(ALICE, &format!("alice{s}")).await;
    w.link(BOB, &format!("bob{s}")).await;
    let commands: Vec<String> = w
        .discord
        .commands()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(commands, ["link", "unlink", "ask", "status", "close"]);

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

    let long_name = format!("please list the files {}", "and more ".repeat(20));
    let root = w.discord.say(ALICE, CHANNEL, &long_name, true);
    let thread = w.thread_of(&root).await;
    let made = w
        .discord
        .threads()
        .into_iter()
        .find(|t| t.id == thread)
        .unwrap();
    assert_eq!(made.parent_id, CHANNEL);
    assert_eq!(made.auto_archive_duration, 1440);
    assert_eq!(made.name.chars().count(), 100, "{}", made.name);

    // The first words, then the approval embed with its footer and buttons.
    w.wait_shown(&thread, "the approval prompt", |m| {
        m.iter().any(|m| m.embeds[0]["title"] == "Approval needed")
    })
    .await;
    let shown = w.shown(&thread);
    assert_eq!(shown[0].content, "Let me look. ");
    let prompt = shown
        .iter()
        .find(|m| m.embeds[0]["title"] == "Approval needed")
        .unwrap()
        .clone();
    let route = w
        .store
        .channel_route("discord", &thread)
        .await
        .unwrap()
        .unwrap();
    let footer = prompt.embeds[0]["footer"]["text"].as_str().unwrap();
    assert!(footer.starts_with(&format!("{}|", route.ws_id)), "{footer}");
    let ids: Vec<&str> = prompt.components[0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ts:approve", "ts:reject", "ts:always"]);

    // Bob's press is refused, privately; nothing runs.
    let pressed = w.discord.click(BOB, &prompt.id, "ts:approve");
    w.discord
        .wait("the refusal", |d| {
            d.response(&pressed).as_deref() == Some("Only the workstream's owner can answer this.")
        })
        .await;
    let deferred = w
        .discord
        .callbacks()
        .into_iter()
        .find(|(t, _)| t == &pressed)
        .unwrap()
        .1;
    assert_eq!(deferred["type"], 5);
    assert_eq!(deferred["data"]["flags"], 64, "not ephemeral");
    let ran = |w: &World| {
        w.cluster
            .llm
            .chat_bodies()
            .iter()
            .any(|b| b.to_string().contains("from-the-tool\\n"))
    };
    assert!(!ran(&w), "the tool ran on Bob's press");

    // Alice's press runs it; the answer is one message below the prompt, edited at most
    // every 1.5 s.
    let pressed = w.discord.click(ALICE, &prompt.id, "ts:approve");
    w.discord
        .wait("the approval", |d| {
            d.response(&pressed).as_deref() == Some("Approved.")
        })
        .await;
    w.wait_shown(&thread, "the whole answer", |m| {
        m.iter().any(|m| m.content == answer)
    })
    .await;
    let written = w
        .shown(&thread)
        .into_iter()
        .find(|m| m.content == answer)
        .unwrap();
    assert!(written.posted > prompt.posted);
    assert!(!written.edits.is_empty());
    let mut times = vec![written.posted];
    times.extend(&written.edits);
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 1400, "edits {times:?}");
    }

    // /status and /close, by slash command; the thread is archived.
    let status = w.discord.slash(ALICE, &thread, "status", None);
    w.discord
        .wait("the status", |d| {
            d.response(&status)
                .is_some_and(|r| r.contains(&route.ws_id) && r.contains("on node n1"))
        })
        .await;
    let refused = w.discord.slash(BOB, &thread, "close", None);
    w.discord
        .wait("the close refusal", |d| {
            d.response(&refused).as_deref() == Some("Only the workstream's owner can close it.")
        })
        .await;
    let closed = w.discord.slash(ALICE, &thread, "close", None);
    w.discord
        .wait("the close", |d| {
            d.response(&closed).as_deref() == Some("Done.")
                && d.threads().iter().any(|t| t.id == thread && t.archived)
        })
        .await;
    assert!(
        w.store
            .channel_route("discord", &thread)
            .await
            .unwrap()
            .is_none()
    );

    // An unlinked account is ignored.
    let before = w.discord.requests().len();
    let stranger = w.discord.say(CAROL, CHANNEL, "hello?", true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !w.discord
            .threads()
            .iter()
            .any(|t| t.from_message == stranger)
    );
    assert_eq!(
        w.discord.requests().len(),
        before,
        "the bot answered a stranger"
    );
    w.assert_clean();
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_sent_back_through_the_changes_form() {
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
    let root = w.discord.say(ALICE, CHANNEL, "make a plan", true);
    let thread = w.thread_of(&root).await;
    w.wait_shown(&thread, "the plan review", |m| {
        m.iter().any(|m| m.embeds[0]["title"] == "Plan review")
    })
    .await;
    let review = w
        .shown(&thread)
        .into_iter()
        .find(|m| m.embeds[0]["title"] == "Plan review")
        .unwrap();
    assert_eq!(review.embeds[0]["description"], "1. read\n2. fix");
    let ids: Vec<&str> = review.components[0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ts:plan_approve", "ts:plan_changes"]);

    // Request Changes opens a form; what is typed there goes back to the model.
    let pressed = w.discord.click(ALICE, &review.id, "ts:plan_changes");
    w.discord
        .wait("the form", |d| {
            d.callbacks()
                .iter()
                .any(|(t, b)| t == &pressed && b["type"] == 9)
        })
        .await;
    let form = w
        .discord
        .callbacks()
        .into_iter()
        .find(|(t, _)| t == &pressed)
        .unwrap()
        .1;
    let custom = form["data"]["custom_id"].as_str().unwrap().to_owned();
    let submitted = w.discord.submit(ALICE, &thread, &custom, "use fewer steps");
    w.discord
        .wait("the answer to the form", |d| {
            d.response(&submitted).as_deref() == Some("Changes requested.")
        })
        .await;
    w.wait_shown(&thread, "the revised answer", |m| {
        m.iter().any(|m| m.content == "Revised: one step.")
    })
    .await;
    w.assert_clean();
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_and_a_long_answer_is_split_at_fences() {
    let w = world(RouteSettings::default()).await;
    w.link(ALICE, &format!("alice{}", suffix())).await;
    // A 5,000-character answer with a code block across the 2,000-character limit, written
    // slowly while Discord refuses the first edits.
    let mut answer = String::from("Here is the code:\n```rust\n");
    for i in 0..200 {
        answer.push_str(&format!("let value_{i} = {i};\n"));
    }
    answer.push_str("```\nThat is all.\n");
    let mut turn = Turn::new();
    for piece in answer.as_bytes().chunks(250) {
        turn = turn.content(std::str::from_utf8(piece).unwrap());
    }
    w.cluster
        .llm
        .route_latest_slowly("show me code", turn, Duration::from_millis(150));
    w.discord.rate_limit("PATCH", "/messages/", 2, 2.0);
    let root = w.discord.say(ALICE, CHANNEL, "show me code", true);
    let thread = w.thread_of(&root).await;
    w.wait_shown(&thread, "the end of the answer", |m| {
        m.last()
            .is_some_and(|m| m.content.ends_with("That is all.\n"))
    })
    .await;
    let parts = w.shown(&thread);
    assert!(parts.len() >= 3, "{} parts", parts.len());
    for part in &parts {
        assert!(part.content.chars().count() <= 2000);
        let fences = part
            .content
            .lines()
            .filter(|l| l.starts_with("```"))
            .count();
        assert_eq!(fences % 2, 0, "a fence left open:\n{}", part.content);
    }
    assert_eq!(
        parts
            .iter()
            .map(|p| p.content.matches("let value_").count())
            .sum::<usize>(),
        200
    );
    let requests = w.discord.requests();
    let limited = requests.iter().filter(|r| r.status == 429).count();
    assert_eq!(limited, 2);
    // After a 429 the relay waits Discord's retry_after (2 s) before the next edit.
    let patches: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/messages/"))
        .collect();
    assert!(
        patches.len() < 40,
        "{} edits: they were not coalesced",
        patches.len()
    );
    w.assert_clean();
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_gateway_a_killed_connection_and_a_restarted_redis_are_all_survived() {
    let mut redis = PrivateRedis::start();
    let w = world_on(&redis.url(), RouteSettings::default()).await;
    w.link(ALICE, &format!("alice{}", suffix())).await;
    w.cluster
        .llm
        .route_latest("first question", Turn::text("First answer."));
    w.cluster
        .llm
        .route_latest("second question", Turn::text("Second answer."));
    w.cluster
        .llm
        .route_latest("third question", Turn::text("Third answer."));
    w.cluster
        .llm
        .route_latest("fourth question", Turn::text("Fourth answer."));
    let root = w.discord.say(ALICE, CHANNEL, "first question", true);
    let thread = w.thread_of(&root).await;
    w.wait_shown(&thread, "the first answer", |m| {
        m.iter().any(|m| m.content == "First answer.")
    })
    .await;

    // Discord drops the socket; what is said meanwhile is replayed on resume.
    w.discord.drop_connection();
    w.discord.say(ALICE, &thread, "second question", false);
    w.wait_shown(&thread, "the second answer", |m| {
        m.iter().any(|m| m.content == "Second answer.")
    })
    .await;
    assert_eq!(w.discord.sessions(), (1, 1), "(identifies, resumes)");

    // The connection actor dies; its supervisor starts it again, resuming the same session.
    let connection = w.gateway.discord.get().unwrap();
    connection.kill();
    w.discord.say(ALICE, &thread, "third question", false);
    w.wait_shown(&thread, "the third answer", |m| {
        m.iter().any(|m| m.content == "Third answer.")
    })
    .await;
    assert_eq!(w.discord.sessions(), (1, 2), "(identifies, resumes)");
    assert_ne!(
        w.gateway.discord.get().unwrap().get_id(),
        connection.get_id()
    );

    // Redis restarts under the gateway and the node: the thread's next message is answered by
    // the same workstream.
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.up();
    w.discord.say(ALICE, &thread, "fourth question", false);
    w.wait_shown(&thread, "the fourth answer", |m| {
        m.iter().any(|m| m.content == "Fourth answer.")
    })
    .await;
    let bodies = w.cluster.llm.chat_bodies();
    let last = bodies
        .iter()
        .rev()
        .find(|b| b.to_string().contains("fourth question"))
        .unwrap();
    assert!(
        last.to_string().contains("First answer."),
        "a new conversation: {last}"
    );
    assert!(!w.shown(&thread).iter().any(|m| m.content.contains(BOT_ID)));
    w.assert_clean();
    w.gateway.shutdown().await;
}
