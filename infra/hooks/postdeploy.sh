#!/bin/sh
# azd postdeploy hook: subscribe the Event Grid-triggered function to the Key Vault system topic.
# azd exports main.bicep's outputs as environment variables; az must be logged in to the same
# tenant and subscription (az login; az account set --subscription "$AZURE_SUBSCRIPTION_ID").
set -eu

: "${AZURE_RESOURCE_GROUP:?run through azd (azd deploy / azd up), which sets the outputs}"
: "${AZURE_FUNCTION_APP_NAME:?}"
: "${AZURE_EVENTGRID_SYSTEM_TOPIC_NAME:?}"
: "${AZURE_STORAGE_ACCOUNT_NAME:?}"
: "${AZURE_EVENTGRID_DEADLETTER_CONTAINER:?}"
FUNCTION_NAME="${AZURE_EVENTGRID_FUNCTION_NAME:-keyvault_events}"
TEMPLATE="$(dirname "$0")/../bicep/eventgrid-subscription.bicep"

if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
  az account set --subscription "$AZURE_SUBSCRIPTION_ID"
fi

# The function is indexed a little after the package lands; Event Grid validates the endpoint
# against it, so wait (bounded) until the platform lists it.
attempt=0
until az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --function-name "$FUNCTION_NAME" --only-show-errors >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "postdeploy: function $FUNCTION_NAME not listed on $AZURE_FUNCTION_APP_NAME after 5 minutes" >&2
    exit 1
  fi
  sleep 10
done

az deployment group create \
  --name "registrar-eventgrid-subscription" \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --template-file "$TEMPLATE" \
  --parameters \
    systemTopicName="$AZURE_EVENTGRID_SYSTEM_TOPIC_NAME" \
    functionAppName="$AZURE_FUNCTION_APP_NAME" \
    functionName="$FUNCTION_NAME" \
    storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
    deadLetterContainerName="$AZURE_EVENTGRID_DEADLETTER_CONTAINER" \
  --only-show-errors --output none

echo "postdeploy: Key Vault events of $AZURE_EVENTGRID_SYSTEM_TOPIC_NAME now reach $AZURE_FUNCTION_APP_NAME/$FUNCTION_NAME"
