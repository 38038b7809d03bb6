//! The channel gateway's Matrix adapter against a real Synapse, with a real node and Redis
//! behind it (scripted model): people link their accounts, mention the bot, watch the answer
//! written into a thread, approve a tool call (and are refused another's), close the thread;
//! the bot's connection is killed and resumes; nodes notify people through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod channel_support;
mod cluster_support;

use std::time::Duration;

use channel_support::{Platforms, turnstone_user};
use cluster_support::Cluster;
use serde_json::{Value, json};
use turnstone_actors::mq::SendRequest;
use turnstone_actors::storage::Store;
use turnstone_gateways::channel::Running;
use turnstone_gateways::channel::matrix::{Login, MatrixSettings};
use turnstone_gateways::channel::notify::NotifyAuth;
use turnstone_gateways::channel::router::RouteSettings;
use turnstone_tests::llm::Turn;
use turnstone_tests::matrix::{MatrixUser, Shown, synapse_url};
use turnstone_tests::services::{PrivateRedis, redis_url};

const NOTIFY_TOKEN: &str = "notify-secret";

struct World {
    cluster: Cluster,
    store: Store,
    gateway: Running,
    bot: MatrixUser,
    alice: MatrixUser,
    bob: MatrixUser,
    room: String,
}

async fn world() -> World {
    world_on(&redis_url().unwrap(), RouteSettings::default()).await
}

/// A node on `redis` (nodes' notify tools trust the gateway's token), a gateway making
/// workstreams with `route`, three Matrix people and a room.
async fn world_on(redis: &str, route: RouteSettings) -> World {
    let (cluster, store) =
        channel_support::cluster(redis, &[("TURNSTONE_CHANNEL_AUTH_TOKEN", NOTIFY_TOKEN)]).await;
    let bot = MatrixUser::register("bot").await;
    let alice = MatrixUser::register("alice").await;
    let bob = MatrixUser::register("bob").await;
    let room = alice.create_room(&[&bot.user_id, &bob.user_id]).await;
    bob.join(&room).await;
    let platforms = Platforms {
        matrix: Some(MatrixSettings {
            homeserver: synapse_url().unwrap(),
            user: bot.localpart().to_owned(),
            login: Login::Password(bot.password.clone()),
            rooms: Vec::new(),
        }),
        notify: NotifyAuth {
            token: Some(NOTIFY_TOKEN.into()),
            jwt_secret: None,
        },
        ..Platforms::default()
    };
    let gateway = channel_support::gateway(&cluster, &store, route, platforms).await;
    // The bot joins the room it was invited to.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !alice.members(&room).await.contains(&bot.user_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bot did not join"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    World {
        cluster,
        store,
        gateway,
        bot,
        alice,
        bob,
        room,
    }
}

impl World {
    /// Links a Matrix account to a new Turnstone user by `!link` in the room.
    async fn link(&self, who: &MatrixUser, name: &str) {
        let token = turnstone_user(&self.store, name).await;
        who.say(&self.room, &format!("!link {token}")).await;
        self.alice
            .wait_message(
                &self.room,
                &self.bot.user_id,
                &format!("{}: Linked to {name}.", who.user_id),
            )
            .await;
    }
}

fn answer_of(view: &[Shown], text: &str) -> bool {
    view.iter().any(|m| m.body == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_becomes_a_thread_with_a_workstream_its_owner_approves_tools_in() {
    let w = world().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    w.link(&w.alice, &format!("alice{suffix}")).await;
    w.link(&w.bob, &format!("bob{suffix}")).await;

    // Unlinked accounts are ignored: a stranger's mention gets no thread.
    let carol = MatrixUser::register("carol").await;
    let carol_room = carol.create_room(&[&w.bot.user_id]).await;

    // The model first explains and asks to run a command, then answers from its output,
    // slowly, so the answer is written in several edits.
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
        .alice
        .mention(&w.room, &w.bot.user_id, "please list the files")
        .await;
    // The first words appear in a thread from the mention, then the approval prompt.
    let view = w
        .alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the approval prompt", |v| {
            v.iter().any(|m| m.body.starts_with("🔐 Approval needed"))
        })
        .await;
    assert_eq!(view[0].body, "Let me look. ", "{view:#?}");
    let prompt = view
        .iter()
        .find(|m| m.body.starts_with("🔐"))
        .unwrap()
        .clone();
    assert!(prompt.body.contains("bash"), "{}", prompt.body);

    // Bob may not approve Alice's call: he is told so and nothing runs.
    w.bob.react(&w.room, &prompt.event_id, "✅").await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the refusal", |v| {
            v.iter().any(|m| {
                m.body
                    == format!(
                        "{}: Only the workstream's owner can answer this.",
                        w.bob.user_id
                    )
            })
        })
        .await;
    let asked = |marker: &str| {
        w.cluster
            .llm
            .chat_bodies()
            .iter()
            .filter(|b| b.to_string().contains(marker))
            .count()
    };
    assert_eq!(asked("from-the-tool"), 0, "the tool ran on Bob's word");

    // Alice approves: the tool runs and the answer is written into one message below the
    // prompt, edited at most every 1.5 s, ending as the whole answer.
    w.alice.react(&w.room, &prompt.event_id, "✅").await;
    let view = w
        .alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the whole answer", |v| {
            answer_of(v, &answer)
        })
        .await;
    let written = view.iter().find(|m| m.body == answer).unwrap();
    assert!(
        written.sent > prompt.sent,
        "the answer is above the prompt: {view:#?}"
    );
    assert!(
        view.iter()
            .any(|m| m.body == format!("{}: Approved.", w.alice.user_id)),
        "{view:#?}"
    );
    assert!(
        !written.edits.is_empty(),
        "the answer was not streamed: {written:?}"
    );
    let mut times = vec![written.sent];
    times.extend(&written.edits);
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1400,
            "two edits {} ms apart: {times:?}",
            pair[1] - pair[0]
        );
    }

    // /status names the workstream and its node.
    w.alice.say_in_thread(&w.room, &root, "/status").await;
    let view = w
        .alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the status", |v| {
            v.iter().any(|m| m.body.contains("on node n1"))
        })
        .await;
    let status = view.iter().find(|m| m.body.contains("on node n1")).unwrap();
    let route = w
        .store
        .channel_route("matrix", &format!("{}/{root}", w.room))
        .await
        .unwrap()
        .unwrap();
    assert!(status.body.contains(&route.ws_id), "{}", status.body);

    // The stranger's mention was ignored all along.
    carol.mention(&carol_room, &w.bot.user_id, "hello?").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !carol
            .events(&carol_room)
            .await
            .iter()
            .any(|e| e["sender"] == w.bot.user_id && e["type"] == "m.room.message"),
        "the bot answered an unlinked account"
    );

    // Bob may not close it; Alice may: the workstream is closed and the route gone.
    w.bob.say_in_thread(&w.room, &root, "/close").await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the close refusal", |v| {
            v.iter().any(|m| {
                m.body
                    .ends_with("Only the workstream's owner can close it.")
            })
        })
        .await;
    w.alice.say_in_thread(&w.room, &root, "/close").await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "Closed.", |v| {
            v.iter().any(|m| m.body == "Closed.")
        })
        .await;
    assert!(
        w.store
            .channel_route("matrix", &format!("{}/{root}", w.room))
            .await
            .unwrap()
            .is_none()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.cluster.owner(&route.ws_id).await.is_some() {
        // The node may keep the owner key (0.4.1's API close); the workstream is gone.
        let list = w.cluster.nodes[0].url.clone();
        let open: Value = reqwest::get(format!("{list}/v1/api/workstreams"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !open.to_string().contains(&route.ws_id) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the workstream is still open: {open}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_restarted_and_misses_nothing() {
    let w = world().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    w.link(&w.alice, &format!("alice{suffix}")).await;
    w.cluster
        .llm
        .route_latest("first question", Turn::text("First answer."));
    w.cluster
        .llm
        .route_latest("second question", Turn::text("Second answer."));
    let root = w
        .alice
        .mention(&w.room, &w.bot.user_id, "first question")
        .await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the first answer", |v| {
            answer_of(v, "First answer.")
        })
        .await;

    // The connection actor dies; what Alice says meanwhile is read when it is back.
    let connection = w.gateway.matrix.get().expect("the Matrix connection runs");
    connection.kill();
    w.alice
        .say_in_thread(&w.room, &root, "second question")
        .await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the second answer", |v| {
            answer_of(v, "Second answer.")
        })
        .await;
    let again = w.gateway.matrix.get().expect("restarted");
    assert_ne!(again.get_id(), connection.get_id(), "not a new actor");
    // One workstream served both: the second message went to the same route.
    let bodies = w.cluster.llm.chat_bodies();
    let second = bodies
        .iter()
        .rev()
        .find(|b| b.to_string().contains("second question"))
        .unwrap();
    assert!(
        second.to_string().contains("First answer."),
        "a new conversation: {second}"
    );
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reaches_a_user_by_name_and_refuses_bad_calls() {
    let w = world().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let name = format!("alice{suffix}");
    w.link(&w.alice, &name).await;
    let url = format!("http://{}", w.gateway.local);
    turnstone_actors::provider::install_crypto_provider();
    let http = reqwest::Client::new();
    let post = |body: Value, token: Option<&str>| {
        let mut request = http.post(format!("{url}/v1/api/notify")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok", "service": "channel"}));

    let body =
        json!({"target": {"username": name}, "message": "The build is green.", "title": "CI"});
    assert_eq!(post(body.clone(), None).await.unwrap().status(), 401);
    assert_eq!(
        post(body.clone(), Some("wrong")).await.unwrap().status(),
        401
    );
    let bad = post(json!({"target": {}, "message": "x"}), Some(NOTIFY_TOKEN))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().await.unwrap()["error"].is_string());
    let nobody = post(
        json!({"target": {"username": "nobody-at-all"}, "message": "x"}),
        Some(NOTIFY_TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(nobody.status(), 404);

    let sent = post(body, Some(NOTIFY_TOKEN)).await.unwrap();
    assert_eq!(sent.status(), 200);
    let sent: Value = sent.json().await.unwrap();
    let result = &sent["results"][0];
    assert_eq!(result["channel_type"], "matrix");
    assert_eq!(result["status"], "sent", "{sent}");
    let dm = result["channel_id"].as_str().unwrap().to_owned();
    // Alice is invited to a direct room holding the message.
    assert!(w.alice.invites().await.contains(&dm));
    w.alice.join(&dm).await;
    let message = w
        .alice
        .wait_message(&dm, &w.bot.user_id, "The build is green.")
        .await;
    assert_eq!(message["content"]["body"], "**CI**\nThe build is green.");

    // The gateway is registered for the nodes' notify tool, and leaves on shutdown.
    let live = w
        .store
        .live_services("channel", Duration::from_secs(120))
        .await
        .unwrap();
    let me = live
        .iter()
        .find(|s| s.service_id == w.gateway.service_id)
        .expect("registered");
    assert_eq!(
        me.url,
        format!("http://127.0.0.1:{}", w.gateway.local.port())
    );
    let id = w.gateway.service_id.clone();
    w.gateway.shutdown().await;
    let live = w
        .store
        .live_services("channel", Duration::from_secs(120))
        .await
        .unwrap();
    assert!(!live.iter().any(|s| s.service_id == id), "still registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_reviewed_in_the_thread_and_sent_back_with_changes() {
    let w = world_on(
        &redis_url().unwrap(),
        RouteSettings {
            auto_approve_tools: vec!["plan".into()],
            ..RouteSettings::default()
        },
    )
    .await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    w.link(&w.alice, &format!("alice{suffix}")).await;
    w.link(&w.bob, &format!("bob{suffix}")).await;
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
    let root = w
        .alice
        .mention(&w.room, &w.bot.user_id, "make a plan")
        .await;
    let view = w
        .alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the plan review", |v| {
            v.iter().any(|m| m.body.starts_with("📋 Plan for review"))
        })
        .await;
    let review = view.iter().find(|m| m.body.starts_with("📋")).unwrap();
    assert!(review.body.contains("1. read\n2. fix"), "{}", review.body);

    // Bob's changes are refused; Alice's go back to the model as feedback.
    w.bob
        .say_in_thread(&w.room, &root, "!changes do it my way")
        .await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the refusal", |v| {
            v.iter().any(|m| {
                m.body.starts_with(&w.bob.user_id) && m.body.contains("Only the workstream's owner")
            })
        })
        .await;
    w.alice
        .say_in_thread(&w.room, &root, "!changes use fewer steps")
        .await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the revised answer", |v| {
            answer_of(v, "Revised: one step.")
        })
        .await;
    let fed: Vec<String> = w
        .cluster
        .llm
        .chat_bodies()
        .iter()
        .map(Value::to_string)
        .collect();
    assert!(
        fed.iter()
            .any(|b| b.contains("User feedback on this plan: use fewer steps")),
        "the feedback did not reach the model"
    );
    assert!(
        !fed.iter().any(|b| b.contains("do it my way")),
        "Bob's changes were taken"
    );
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_the_gateway_the_thread_goes_on() {
    let mut redis = PrivateRedis::start();
    let w = world_on(&redis.url(), RouteSettings::default()).await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    w.link(&w.alice, &format!("alice{suffix}")).await;
    w.cluster
        .llm
        .route_latest("before the restart", Turn::text("Answer one."));
    w.cluster
        .llm
        .route_latest("after the restart", Turn::text("Answer two."));
    let root = w
        .alice
        .mention(&w.room, &w.bot.user_id, "before the restart")
        .await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the first answer", |v| {
            answer_of(v, "Answer one.")
        })
        .await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.up();
    // The node and the gateway's relay find Redis again; the same thread's next message is
    // answered by the same workstream.
    w.alice
        .say_in_thread(&w.room, &root, "after the restart")
        .await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the second answer", |v| {
            answer_of(v, "Answer two.")
        })
        .await;
    let bodies = w.cluster.llm.chat_bodies();
    let second = bodies
        .iter()
        .rev()
        .find(|b| b.to_string().contains("after the restart"))
        .unwrap();
    assert!(
        second.to_string().contains("Answer one."),
        "a new conversation: {second}"
    );
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_notify_tool_finds_the_gateway_and_reaches_the_user() {
    let w = world().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let name = format!("alice{suffix}");
    w.link(&w.alice, &name).await;
    let args = json!({"username": name, "message": "Deploy finished.", "title": "Ops"}).to_string();
    w.cluster
        .llm
        .route_latest("tell alice", Turn::new().tool_call("n1", "notify", &args));
    w.cluster
        .llm
        .route_latest("Notification sent via matrix", Turn::text("Told her."));
    let result = w
        .cluster
        .client
        .send_and_wait(
            SendRequest::new("tell alice")
                .auto_approve(true)
                .timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(result.ok(), "{result:?}");
    // The bot invites Alice to a direct room with the message.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dm = loop {
        if let Some(room) = w.alice.invites().await.into_iter().find(|r| r != &w.room) {
            break room;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invitation; tool said {:?}",
            result.tool_results
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    w.alice.join(&dm).await;
    let message = w
        .alice
        .wait_message(&dm, &w.bot.user_id, "Deploy finished.")
        .await;
    assert_eq!(message["content"]["body"], "**Ops**\nDeploy finished.");
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_homeservers_rate_limit_is_waited_out_and_nothing_is_lost() {
    let w = world().await;
    let name = format!("alice{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    w.link(&w.alice, &name).await;
    // The bot may send one event a second: the first words, the approval prompt right after
    // them, the owner's "Approved." and the answer come faster than that, and Synapse refuses
    // some with M_LIMIT_EXCEEDED and its retry_after_ms.
    let admin = MatrixUser::register_admin("admin").await;
    admin.limit_messages(&w.bot.user_id, 1, 1).await;
    let bash = json!({"command": "echo limited-tool"}).to_string();
    w.cluster.llm.route_latest(
        "a limited turn",
        Turn::text("Looking. ").tool_call("c1", "bash", &bash),
    );
    w.cluster
        .llm
        .route_latest("limited-tool", Turn::text("Done despite the limit."));
    let root = w
        .alice
        .mention(&w.room, &w.bot.user_id, "a limited turn")
        .await;
    let view = w
        .alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the approval prompt", |v| {
            v.iter().any(|m| m.body.starts_with("🔐 Approval needed"))
        })
        .await;
    assert_eq!(view[0].body, "Looking. ");
    let prompt = view.iter().find(|m| m.body.starts_with("🔐")).unwrap();
    w.alice.react(&w.room, &prompt.event_id, "✅").await;
    let view = w
        .alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the answer", |v| {
            answer_of(v, "Done despite the limit.")
                && answer_of(v, &format!("{}: Approved.", w.alice.user_id))
        })
        .await;
    // Each event the bot sent was at least about a second after the one before (Synapse's
    // clock): none got through by not waiting.
    let mut sent: Vec<u64> = view.iter().map(|m| m.sent).collect();
    sent.sort_unstable();
    assert!(sent.len() >= 4, "{view:#?}");
    for pair in sent.windows(2) {
        assert!(pair[1] - pair[0] >= 800, "sent {sent:?}");
    }
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_whose_workstream_is_gone_gets_a_new_one_resuming_its_conversation() {
    let w = world().await;
    w.link(
        &w.alice,
        &format!("alice{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
    )
    .await;
    w.cluster
        .llm
        .route_latest("remember the colour teal", Turn::text("Teal it is."));
    w.cluster
        .llm
        .route_latest("which colour", Turn::text("You said teal."));
    let root = w
        .alice
        .mention(&w.room, &w.bot.user_id, "remember the colour teal")
        .await;
    w.alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the first answer", |v| {
            answer_of(v, "Teal it is.")
        })
        .await;
    let channel = format!("{}/{root}", w.room);
    let first = w
        .store
        .channel_route("matrix", &channel)
        .await
        .unwrap()
        .unwrap();
    // The workstream goes away (closed on its node, its owner key gone, as after an eviction).
    w.cluster
        .client
        .close_workstream(&first.ws_id)
        .await
        .unwrap();
    w.cluster
        .transport
        .delete(&w.cluster.client.keys().owner(&first.ws_id))
        .await
        .unwrap();

    // The next message in the thread makes a new workstream that resumes the old session:
    // the model sees the earlier turn, and the thread says it was resumed.
    w.alice
        .say_in_thread(&w.room, &root, "which colour did I say?")
        .await;
    let view = w
        .alice
        .wait_thread(&w.room, &root, &w.bot.user_id, "the resumed answer", |v| {
            answer_of(v, "You said teal.")
        })
        .await;
    assert!(
        view.iter()
            .any(|m| m.body.starts_with("↩️ Resumed the earlier conversation")),
        "{view:#?}"
    );
    let second = w
        .store
        .channel_route("matrix", &channel)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.ws_id, first.ws_id, "the gone workstream was reused");
    let bodies = w.cluster.llm.chat_bodies();
    let asked = bodies
        .iter()
        .rev()
        .find(|b| b.to_string().contains("which colour did I say"))
        .unwrap();
    assert!(
        asked.to_string().contains("Teal it is."),
        "not resumed: {asked}"
    );
    w.gateway.shutdown().await;
}
