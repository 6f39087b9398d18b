/// Dispatches a session's input to the text or binary protocol (memcached decides by
/// the first byte of a connection: 0x80 is binary).
public enum ProtocolHandler {
    public static func run(_ s: Session, _ ctx: KVSContext) {
        if s.dialect == .undecided {
            guard let first = s.input.dropFirst(s.consumed).first else { return }
            s.dialect = first == BinaryProtocol.requestMagic ? .binary : .text
        }
        switch s.dialect {
        case .binary: BinaryProtocol.run(s, ctx)
        case .text, .undecided: TextProtocol.run(s, ctx)
        }
    }
}
