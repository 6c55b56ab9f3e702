// The STOMP session: one @stomp/stompjs Client on /ws/im that reconnects by itself. Every
// (re)connect subscribes again (stompjs does not keep subscriptions across connections) and then
// calls onConnected, where the page re-syncs what it missed by seq. Where the broker resumes (a
// group's topic, the notifications queue: `since-seq`, the seq the page holds; the private chats'
// queue: `since-position`, the highest inbox position seen; both from handlers.resumeFrom), what
// was missed arrives on the subscription, marked `replay:true`.
import { Client } from "@stomp/stompjs";

const USER_QUEUES = ["messages", "events", "notifications", "errors"];

// The private chats (and the assistant's) resume by the user's inbox position, not by a seq: their
// queue mixes conversations.
const RESUME_HEADER = { "/user/queue/messages": "since-position" };

export class Session {
  constructor(token, handlers) {
    this.handlers = handlers;
    this.topics = new Map(); // destination -> stompjs subscription, or null while offline
    this.resumed = new Set(); // destinations resumed (since-seq, since-position) on this connection
    this.connected = false;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.client = new Client({
      brokerURL: `${scheme}://${location.host}/ws/im`,
      connectHeaders: { Authorization: `Bearer ${token}` },
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      reconnectDelay: 1000,
      onConnect: () => this.onConnect(),
      onStompError: (frame) => {
        handlers.onStatus?.("error", frame.headers.message || "error");
        if (frame.headers.message === "unauthorized") {
          // A bad or expired token will not get better by retrying.
          this.client.deactivate();
          handlers.onUnauthorized?.(frame.body);
        }
      },
      onWebSocketClose: () => {
        this.connected = false;
        this.resumed.clear();
        for (const destination of this.topics.keys()) this.topics.set(destination, null);
        handlers.onStatus?.("offline");
      },
    });
  }

  start() {
    this.handlers.onStatus?.("connecting");
    this.client.activate();
  }

  stop() {
    return this.client.deactivate();
  }

  onConnect() {
    this.connected = true;
    for (const queue of USER_QUEUES) this.subscribe(`/user/queue/${queue}`, queue);
    for (const destination of this.topics.keys()) this.subscribeTopic(destination);
    // Announcements carry their text as sent (not JSON) and their id in a header.
    this.client.subscribe("/topic/announcements", (frame) =>
      this.handlers.onAnnouncement?.({ id: frame.headers["announcement-id"], body: frame.body, createdAt: Date.now() }),
    );
    this.handlers.onStatus?.("online");
    this.handlers.onConnected?.();
  }

  dispatch(source, frame) {
    let body = null;
    try {
      body = JSON.parse(frame.body);
    } catch {
      return;
    }
    // The headers too: the private chats' queue tells each message's inbox position in one.
    this.handlers.onEvent?.(frame.headers.event, body, source, frame.headers);
  }

  // Subscribes from the seq (or inbox position) the page holds where the broker resumes (a bad
  // since-seq or since-position would close the connection, so only an integer, and only where
  // resumeFrom gives one), live elsewhere.
  subscribe(destination, source) {
    const since = this.handlers.resumeFrom?.(destination);
    const resume = Number.isSafeInteger(since) && since >= 0;
    if (resume) this.resumed.add(destination);
    else this.resumed.delete(destination);
    const headers = resume ? { [RESUME_HEADER[destination] ?? "since-seq"]: String(since) } : {};
    return this.client.subscribe(destination, (frame) => this.dispatch(source, frame), headers);
  }

  // Whether what `destination` missed comes on its subscription, so needs no REST catch-up.
  resumes(destination) {
    return this.resumed.has(destination);
  }

  subscribeTopic(destination) {
    if (this.connected) {
      this.topics.set(destination, this.subscribe(destination, destination));
    } else {
      this.topics.set(destination, null);
    }
  }

  // Keeps a topic subscribed across reconnects.
  follow(destination) {
    if (!this.topics.has(destination) || (this.connected && !this.topics.get(destination))) {
      this.subscribeTopic(destination);
    }
  }

  unfollow(destination) {
    const subscription = this.topics.get(destination);
    this.topics.delete(destination);
    this.resumed.delete(destination);
    if (subscription && this.connected) subscription.unsubscribe();
  }

  // Publishes when connected; false when offline, so that the caller can keep it for later.
  publish(destination, body) {
    if (!this.connected) return false;
    try {
      this.client.publish({ destination, body: JSON.stringify(body), headers: { "content-type": "application/json" } });
      return true;
    } catch {
      return false;
    }
  }
}
