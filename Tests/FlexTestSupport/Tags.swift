import Testing

extension Tag {
    /// Tests that start servers, processes, DPDK devices or network namespaces: seconds
    /// each, where a unit test takes milliseconds. `Scripts/test.sh --fast` skips them.
    @Tag public static var integration: Self
}
