/// A command that failed while running (a file it cannot read, a port it cannot bind,
/// a run that did not finish), as opposed to a command line it cannot accept
/// (ArgumentParser's `ValidationError`, printed with the usage). ArgumentParser prints
/// it as one line, `Error: <description>`, and exits with status 1.
public struct RuntimeFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
