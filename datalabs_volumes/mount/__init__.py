"""Mounting volumes: local bind mounts and rclone, and Kubernetes pod volume builders."""
