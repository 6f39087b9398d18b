import Dispatch
import FlexIO
import Synchronization

/// The software FlexNIC between a port without hardware steering and the cores' queues
/// (the thesis ran it on dedicated emulation cores): receive a burst, run the program,
/// deliver descriptors, send the replies the program built.
///
/// `poll()` runs one burst and can be called inline by a core that owns the rx queue
/// (no extra thread: cores are scarce); `start()` runs it on a thread of its own that
/// sleeps in the port's wait when there is no traffic.
public final class SteeringEmulator: @unchecked Sendable {
    public let port: any PacketPort
    public let pipeline: SteeringPipeline
    public let rxQueue: Int
    public let txQueue: Int
    let batch: PacketBatch
    let replies: PacketBatch
    let running = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)
    let unsentReplies = Atomic<UInt64>(0)

    public init(port: any PacketPort, pipeline: SteeringPipeline, rxQueue: Int = 0, txQueue: Int = 0, burst: Int = 32) {
        self.port = port
        self.pipeline = pipeline
        self.rxQueue = rxQueue
        self.txQueue = txQueue
        batch = PacketBatch(capacity: burst)
        replies = PacketBatch(capacity: burst)
    }

    /// The most packets one `receive` returns.
    public var burst: Int { batch.capacity }

    /// Replies dropped because the port would not take them.
    public var droppedReplies: UInt64 { unsentReplies.load(ordering: .relaxed) }

    /// Receives and steers one burst; returns how many packets it handled.
    @discardableResult
    public func poll() -> Int {
        let n = receive()
        if n > 0 { steerReceived() }
        return n
    }

    /// The two halves of `poll`, for a caller that times them apart: fetch a burst
    /// from the port (with kernel sockets, the receive system call)...
    public func receive() -> Int { port.receive(queue: rxQueue, into: batch) }

    /// ...and run the program over it, delivering descriptors and sending the replies
    /// the program built.
    public func steerReceived() {
        pipeline.process(batch, port: port, replies: replies)
        flushReplies()
    }

    /// `steerReceived`, but the replies the program built are appended to `out`, for a
    /// caller that sends them with its own replies on `txQueue`: one send for both
    /// (with kernel sockets, one system call, and a client's replies stay together for
    /// the port to send as one run). `out` needs room for the burst (`receive`'s
    /// count); replies that find it full are dropped and counted by the pipeline.
    public func steerReceived(replyingInto out: PacketBatch) {
        pipeline.process(batch, port: port, replies: out)
    }

    func flushReplies() {
        var attempts = 0
        while !replies.isEmpty && attempts < 4 {
            if port.transmit(queue: txQueue, replies) == 0 { attempts += 1 }
        }
        if !replies.isEmpty {
            unsentReplies.wrappingAdd(UInt64(replies.count), ordering: .relaxed)
            port.release(replies)
        }
    }

    /// Starts the emulator thread.
    public func start(name: String = "flexnic-emulator") {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        CoreThread.start(name: name) { [self] in
            CoreLoop(ports: [(port, rxQueue)]).run(while: { running.load(ordering: .relaxed) }) {
                CoreLoop.Round(work: poll())
            }
            finished.signal()
        }
    }

    /// Stops the thread and waits for it to finish its burst.
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }
}
