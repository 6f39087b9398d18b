import FlexCLI
import Foundation

/// The system tools flexbench runs (ip, ethtool, taskset): found in the system
/// directories, run to completion, their error output in the error they throw.
enum SystemCommand {
    /// `tool`'s path in /usr/sbin, /usr/bin, /sbin or /bin; nil if none has it.
    static func path(of tool: String) -> String? {
        ["/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"].map { $0 + tool }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func run(_ arguments: String...) throws { try run(arguments) }

    /// Runs `arguments` (the first a tool's name) and throws with what it wrote to
    /// standard error unless it exits 0.
    static func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path(of: arguments[0]) ?? arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        let said = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: said, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw RuntimeFailure("\(arguments.joined(separator: " ")) failed" + (text.isEmpty ? "" : ": \(text)"))
        }
    }
}
