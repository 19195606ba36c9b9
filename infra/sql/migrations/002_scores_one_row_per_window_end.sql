-- One score row per (session, last frame of the window). The window's start depends on which frames
-- a processor still held (a restarted one has fewer), so keying on the end alone keeps a re-scored
-- window an update, never a second row.
ALTER TABLE scores DROP PRIMARY KEY, ADD PRIMARY KEY (session_id, window_end_seq);
