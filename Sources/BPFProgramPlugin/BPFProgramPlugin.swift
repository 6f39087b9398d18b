import Foundation
import PackagePlugin

/// Compiles a target's eBPF programs (`XDP/*.bpf.c`) with clang's bpf target and
/// embeds each object in the target as a base64 string constant named after the file
/// (`kvs_reply_offload.bpf.c` -> `BPFObjects.kvsReplyOffload`), which libbpf loads at
/// run time: no clang or bpftool is needed where the server runs.
///
/// Without clang's bpf target or libbpf's headers the constant is empty and the
/// program reports that it was built without eBPF support; the build goes on.
@main
struct BPFProgramPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let target = target as? SourceModuleTarget else { return [] }
        let directory = target.directoryURL.appending(path: "XDP")
        let sources = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let clang = (try? context.tool(named: "clang").url.path) ?? "clang"
        return sources.filter { $0.hasSuffix(".bpf.c") }.sorted().map { file in
            let stem = String(file.dropLast(".bpf.c".count))
            let name = stem.split(separator: "_").enumerated()
                .map { $0.offset == 0 ? String($0.element) : $0.element.prefix(1).uppercased() + $0.element.dropFirst() }
                .joined()
            let source = directory.appending(path: file)
            let object = context.pluginWorkDirectoryURL.appending(path: "\(stem).bpf.o")
            let output = context.pluginWorkDirectoryURL.appending(path: "BPFObject+\(name).swift")
            // clang -> object -> base64 in a Swift extension; an empty string if clang fails.
            let script = """
                set -u
                if "$1" -target bpf -O2 -g -I/usr/include/$(uname -m)-linux-gnu -c "$2" -o "$3" 2>"$3.log"; then
                    data=$(base64 -w0 "$3")
                else
                    cat "$3.log" >&2
                    echo "warning: $2: not compiled to eBPF; the program will not be available" >&2
                    data=""
                fi
                printf 'extension BPFObjects {\\n    /// %s, compiled for the bpf target (base64).\\n    static let %s = "%s"\\n}\\n' "$(basename "$2")" "$5" "$data" > "$4"
                """
            return .buildCommand(
                displayName: "Compiling eBPF program \(file)",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", clang, source.path, object.path, output.path, name],
                inputFiles: [source],
                outputFiles: [output]
            )
        }
    }
}
