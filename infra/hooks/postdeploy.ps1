# azd postdeploy hook (Windows / PowerShell 7): subscribe the Event Grid-triggered function to the
# Key Vault system topic. azd exports main.bicep's outputs as environment variables; az must be
# logged in to the same tenant and subscription.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_EVENTGRID_SYSTEM_TOPIC_NAME',
                  'AZURE_STORAGE_ACCOUNT_NAME', 'AZURE_EVENTGRID_DEADLETTER_CONTAINER') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        throw "postdeploy: $name is not set; run through azd (azd deploy / azd up), which sets the outputs"
    }
}
$functionName = if ($env:AZURE_EVENTGRID_FUNCTION_NAME) { $env:AZURE_EVENTGRID_FUNCTION_NAME } else { 'keyvault_events' }
$template = Join-Path $PSScriptRoot '..' 'bicep' 'eventgrid-subscription.bicep'

if ($env:AZURE_SUBSCRIPTION_ID) {
    az account set --subscription $env:AZURE_SUBSCRIPTION_ID
    if ($LASTEXITCODE -ne 0) { throw 'postdeploy: az account set failed (az login first)' }
}

# The function is indexed a little after the package lands; Event Grid validates the endpoint
# against it, so wait (bounded) until the platform lists it.
$listed = $false
for ($attempt = 0; $attempt -lt 30; $attempt++) {
    az functionapp function show --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
        --function-name $functionName --only-show-errors *> $null
    if ($LASTEXITCODE -eq 0) { $listed = $true; break }
    Start-Sleep -Seconds 10
}
if (-not $listed) {
    throw "postdeploy: function $functionName not listed on $($env:AZURE_FUNCTION_APP_NAME) after 5 minutes"
}

az deployment group create `
    --name 'registrar-eventgrid-subscription' `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --template-file $template `
    --parameters `
        "systemTopicName=$($env:AZURE_EVENTGRID_SYSTEM_TOPIC_NAME)" `
        "functionAppName=$($env:AZURE_FUNCTION_APP_NAME)" `
        "functionName=$functionName" `
        "storageAccountName=$($env:AZURE_STORAGE_ACCOUNT_NAME)" `
        "deadLetterContainerName=$($env:AZURE_EVENTGRID_DEADLETTER_CONTAINER)" `
    --only-show-errors --output none
if ($LASTEXITCODE -ne 0) { throw 'postdeploy: creating the Event Grid subscription failed' }

Write-Host "postdeploy: Key Vault events of $($env:AZURE_EVENTGRID_SYSTEM_TOPIC_NAME) now reach $($env:AZURE_FUNCTION_APP_NAME)/$functionName"
