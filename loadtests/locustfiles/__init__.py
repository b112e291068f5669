"""One Locust user class per scenario; `serving loadtest` picks the file and the class."""
