import CFlexSys
import FlexIO
import FlexNIC
import FlexWire

/// Placed SETs (`--steering dma`): the pipeline appended binary SETs into log segments
/// this worker's partition registered; the worker writes the item header and links it.
extension Worker {
    /// Stores a binary SET the pipeline placed in our segments; what its reply needs.
    /// Nil if the record was not ours to store as it lies (its shard's items live in
    /// another partition, e.g. while the shard moves); the caller then serves the frame
    /// the ordinary way.
    func storePlaced(_ d: Descriptor) -> PlacementLog.StoredSet? {
        guard let record = d.record, !placements.isEmpty else { return nil }
        // All our placing logs belong to our partition, the one the hash must name.
        return context.store.withPartition(d.hash) { home in
            guard home === placements[0].partition else { return nil }
            for i in placements.indices {
                if let placed = placements[i].accept(record) { return placements[i].storeSet(placed, hash: d.hash) }
            }
            return nil
        }
    }

    /// The pipeline closed one of our placing segments: adopt it, register another.
    func placementFilled(_ d: Descriptor) {
        guard let log = placements.first(where: { $0.segments.locate(d.packet.data) != nil }) else { return }
        log.partition.withLock { _ in log.filled(slot: Int(d.packet.flow), used: Int(d.packet.length)) }
    }
}
