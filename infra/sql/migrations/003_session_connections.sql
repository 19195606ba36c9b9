-- How many peer connections a session has been offered. A gateway that sees a session for the first time
-- (it restarted, or a reconnect reached another gateway) numbers the session's frames past any an earlier
-- connection can have used, so the processor never takes new frames for repeats of old ones.
ALTER TABLE sessions ADD COLUMN connections INT NOT NULL DEFAULT 0;
