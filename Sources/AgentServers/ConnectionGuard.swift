import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// Timeouts for a connection's phases (flags of `serve`).
public struct ConnectionTimeouts: Sendable {
    /// From the connection's opening until its first request head is complete.
    public var header: Duration = .seconds(10)
    /// From a request head until its body is complete.
    public var body: Duration = .seconds(30)
    /// A kept-alive connection with no request in progress.
    public var idle: Duration = .seconds(60)
    public init() {}
}

/// Keeps slow, idle and half-sent connections from starving real clients: every connection's
/// phase has a deadline (header, body, idle; none while a response is being produced), and at the
/// cap on open connections a new one evicts the oldest that has no request in progress.
final class ConnectionGuard: @unchecked Sendable {
    enum Phase { case awaitingHead, readingBody, responding, idle }

    final class Entry: @unchecked Sendable {
        let channel: any Channel
        var phase: Phase = .awaitingHead
        var since: ContinuousClock.Instant
        var hungUp = false
        var onHangup: [@Sendable () -> Void] = []
        init(channel: any Channel, since: ContinuousClock.Instant) { self.channel = channel; self.since = since }
    }

    let maxConnections: Int
    let timeouts: ConnectionTimeouts
    private let lock = NSLock()
    private var entries: [ObjectIdentifier: Entry] = [:]
    /// Connections accepted (counted by the accept loop, before their handler is added).
    private var open = 0
    private(set) var evicted = 0

    init(maxConnections: Int, timeouts: ConnectionTimeouts) {
        self.maxConnections = max(1, maxConnections)
        self.timeouts = timeouts
    }

    func register(_ channel: any Channel) -> Entry {
        let e = Entry(channel: channel, since: .now)
        lock.lock(); entries[ObjectIdentifier(channel)] = e; lock.unlock()
        return e
    }

    func unregister(_ channel: any Channel) {
        lock.lock(); entries[ObjectIdentifier(channel)] = nil; lock.unlock()
    }

    func update(_ e: Entry, _ phase: Phase) {
        lock.lock(); e.phase = phase; e.since = .now; lock.unlock()
    }

    /// Calls `action` once the client hangs up (closes its side or the connection); at once if it has.
    func onHangup(_ channel: any Channel, _ action: @escaping @Sendable () -> Void) {
        lock.lock()
        guard let e = entries[ObjectIdentifier(channel)], !e.hungUp else { lock.unlock(); action(); return }
        e.onHangup.append(action)
        lock.unlock()
    }

    func hungUp(_ channel: any Channel) {
        lock.lock()
        let e = entries[ObjectIdentifier(channel)]
        let actions = e?.onHangup ?? []
        e?.hungUp = true
        e?.onHangup = []
        lock.unlock()
        for a in actions { a() }
    }

    func opened() { lock.lock(); open += 1; lock.unlock() }
    func closed() {
        lock.lock()
        open -= 1
        if closing > 0 { closing -= 1 }
        lock.unlock()
    }

    /// Connections the accept loop may take per "yes" (NIO reads up to `maxMessagesPerRead`
    /// connections from the listening socket each time it may accept; 4 by default).
    static let acceptBatch = 4
    /// Evicted connections whose close has not been counted yet.
    private var closing = 0

    /// Whether the accept loop may take another connection: when a whole accept batch still fits
    /// under the cap, or after evicting as many of the oldest connections that are idle or have not
    /// sent a complete request head as a batch needs. Without room for the batch, the loop stopped
    /// at the cap by one "yes" at a time took four, and the cap did not hold (164 of 64 held).
    func mayAccept() -> Bool {
        lock.lock()
        let counted = open - closing
        let needed = counted + min(Self.acceptBatch, maxConnections) - maxConnections
        guard needed > 0 else { lock.unlock(); return true }
        let victims = entries.values
            .filter { $0.phase == .idle || $0.phase == .awaitingHead }
            .sorted { ($0.phase == .idle ? 0 : 1, $0.since) < ($1.phase == .idle ? 0 : 1, $1.since) }
            .prefix(needed)
        for v in victims { entries[ObjectIdentifier(v.channel)] = nil }
        evicted += victims.count
        closing += victims.count
        lock.unlock()
        for v in victims { v.channel.close(promise: nil) }
        return victims.count == needed
    }

    var openConnections: Int { lock.lock(); defer { lock.unlock() }; return open }
}

/// The accept loop's view of the guard (Hummingbird's `AvailableConnectionsDelegate`).
struct GuardedConnections: AvailableConnectionsDelegate {
    let guarded: ConnectionGuard
    mutating func connectionOpened() { guarded.opened() }
    mutating func connectionClosed() { guarded.closed() }
    func isAcceptingNewConnections() -> Bool { guarded.mayAccept() }
}

/// Per connection, after HTTP decoding: tracks its phase and closes it when the phase's deadline passes.
final class ConnectionDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let guarded: ConnectionGuard
    private var entry: ConnectionGuard.Entry?
    private var timer: Scheduled<Void>?
    private var inProgress = 0

    init(guarded: ConnectionGuard) { self.guarded = guarded }

    func handlerAdded(context: ChannelHandlerContext) {
        entry = guarded.register(context.channel)
        arm(context, guarded.timeouts.header)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        guarded.unregister(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        guarded.hungUp(context.channel)
        guarded.unregister(context.channel)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client closed its side: nobody is left to read an answer.
        if case ChannelEvent.inputClosed? = event as? ChannelEvent { guarded.hungUp(context.channel) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            inProgress += 1
            set(.readingBody)
            arm(context, guarded.timeouts.body)
        case .body:
            break
        case .end:
            if inProgress > 0 {
                set(.responding)
                disarm()
            } else {
                // Answered before its body was read (a refusal): only the idle deadline is left.
                set(.idle)
                arm(context, guarded.timeouts.idle)
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            inProgress = max(0, inProgress - 1)
            if inProgress == 0 {
                set(.idle)
                arm(context, guarded.timeouts.idle)
            }
        }
        context.write(data, promise: promise)
    }

    private func set(_ phase: ConnectionGuard.Phase) {
        if let entry { guarded.update(entry, phase) }
    }

    private func arm(_ context: ChannelHandlerContext, _ after: Duration) {
        timer?.cancel()
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: .nanoseconds(after.nanoseconds)) { channel.close(promise: nil) }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
