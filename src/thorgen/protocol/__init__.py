"""fal's wire protocol: queue, sync run, proxy dispatch, storage, SSE and error shapes. No torch here."""
