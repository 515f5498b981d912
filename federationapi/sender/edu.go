package sender

import "encoding/json"

// eduKey is the key under which a newer EDU replaces a queued one of the
// same type ("" for EDUs that must all be delivered): typing per room and
// user; a receipt of one user in one room per receipt type and thread;
// presence of one user.
func eduKey(typ string, content []byte) string {
	switch typ {
	case "m.typing":
		var c struct {
			RoomID string `json:"room_id"`
			UserID string `json:"user_id"`
		}
		if json.Unmarshal(content, &c) != nil || c.RoomID == "" || c.UserID == "" {
			return ""
		}
		return c.RoomID + "\x00" + c.UserID
	case "m.receipt":
		var c map[string]map[string]map[string]struct {
			Data struct {
				ThreadID string `json:"thread_id"`
			} `json:"data"`
		}
		if json.Unmarshal(content, &c) != nil || len(c) != 1 {
			return ""
		}
		for room, types := range c {
			if len(types) != 1 {
				return ""
			}
			for typ, users := range types {
				if len(users) != 1 {
					return ""
				}
				for user, r := range users {
					return room + "\x00" + typ + "\x00" + user + "\x00" + r.Data.ThreadID
				}
			}
		}
	case "m.presence":
		var c struct {
			Push []struct {
				UserID string `json:"user_id"`
			} `json:"push"`
		}
		if json.Unmarshal(content, &c) != nil || len(c.Push) != 1 || c.Push[0].UserID == "" {
			return ""
		}
		return c.Push[0].UserID
	}
	return ""
}
