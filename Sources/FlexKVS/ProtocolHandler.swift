/// Dispatches a session's input to the text or binary protocol (memcached decides by
/// the first byte of a connection: 0x80 is binary).
public enum ProtocolHandler {
    /// Runs the complete requests in the session's input (those starting at or before
    /// input offset `through`).
    public static func run(_ s: Session, _ ctx: KVSContext, through: Int = .max) {
        guard decideDialect(s, ctx) else { return }
        // -B binary: a text request is not understood, and the connection ends (memcached).
        if s.dialect == .text && ctx.binding == .binary { ctx.countError(); s.closing = true; return }
        switch s.dialect {
        case .binary: BinaryProtocol.run(s, ctx, through: through)
        case .text, .undecided: TextProtocol.run(s, ctx, through: through)
        }
    }

    /// Settles the session's dialect from its first byte; false if none has arrived.
    static func decideDialect(_ s: Session, _ ctx: KVSContext) -> Bool {
        if s.dialect == .undecided {
            guard s.unparsed > 0 else { return false }
            let first = s.input[s.consumed]
            s.dialect = first == BinaryProtocol.requestMagic && ctx.binding != .ascii ? .binary : .text
        }
        return true
    }
}
