"""`/v1/videos`: the OpenAI Videos API over the service's own tasks."""
