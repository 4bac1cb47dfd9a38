"""intakegate-desk: a reference desktop support client that embeds the router in-process."""
