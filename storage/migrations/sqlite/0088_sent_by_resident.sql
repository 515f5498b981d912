-- A local user's join that another server made part of the room (this
-- server's send_join): that resident server sends it to the room's other
-- servers, so this server's federation sender leaves it out (as Synapse's
-- proactively_send = False). Sending it again would put it ahead of the
-- user's next event in the resident's next transaction.
ALTER TABLE events ADD COLUMN sent_by_resident INTEGER NOT NULL DEFAULT 0;
