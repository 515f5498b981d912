package appservice

// The kinds of queued ephemeral data (storage appservice_queue.kind).
const (
	kindEphemeral   = "ephemeral"
	kindToDevice    = "to_device"
	kindDeviceLists = "device_lists"
	kindKeyCounts   = "key_counts"
)
